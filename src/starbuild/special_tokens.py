"""StarCoder2's special tokens: the one definition the formatter, tokenizer, exporter and eval share.

They occupy ids 0-8 of the vocabulary in this order, as in StarCoder2's tokenizer (spec §6).
"""

END_OF_TEXT = "<|endoftext|>"
FIM_PREFIX = "<fim_prefix>"
FIM_MIDDLE = "<fim_middle>"
FIM_SUFFIX = "<fim_suffix>"
# The one special token that never carries content, so it pads batches.
FIM_PAD = "<fim_pad>"
REPO_NAME = "<repo_name>"
FILE_SEP = "<file_sep>"
ISSUE_START = "<issue_start>"
ISSUE_COMMENT = "<issue_comment>"

SPECIAL_TOKENS = (
    END_OF_TEXT,
    FIM_PREFIX,
    FIM_MIDDLE,
    FIM_SUFFIX,
    FIM_PAD,
    REPO_NAME,
    FILE_SEP,
    ISSUE_START,
    ISSUE_COMMENT,
)
