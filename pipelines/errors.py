"""The exception the pipeline stages raise for bad input: one line saying what, where and how to fix.

Entry points catch it (and `reward_models.RewardError`) and print `error: <message>` with a non-zero exit.
"""


class PipelineError(Exception):
    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
