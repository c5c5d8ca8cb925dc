"""A byte-level BPE tokenizer trained locally on the SFT texts (the demo downloads no tokenizer).

Special tokens: <pad> (0), <s> (1, prepended to every encoding), </s> (2, EOS). Byte-level pre-tokenisation
attaches a space to the word after it, so a prompt that ends on a word and a response that starts with a
space tokenise the same apart as together: trainers split prompt and completion without a seam.
"""
from __future__ import annotations

from typing import Iterable

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2,
                        model_max_length: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # heavy: only for SFT
    from transformers import PreTrainedTokenizerFast  # heavy: only for SFT

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    bos_id = tokenizer.token_to_id(BOS)
    # BOS on every encoding, as Llama tokenizers do; trainers then see the same prompt ids as generation.
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                             special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   model_max_length=model_max_length)
