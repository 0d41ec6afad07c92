"""StarCoder2's special tokens: the one definition the formatter, cleaner, tokenizer, exporter and eval share.

They occupy the lowest ids of the vocabulary in this order (spec §6.4): ids 0-8 as in StarCoder2's
tokenizer_config.json, then the rest of the paper's Table 5 in its order (the PR tokens without a
second `<repo_name>`), then the PII placeholders the clean stage writes: 38 tokens.
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
ISSUE_CLOSED = "<issue_closed>"
JUPYTER_START = "<jupyter_start>"
JUPYTER_TEXT = "<jupyter_text>"
JUPYTER_CODE = "<jupyter_code>"
JUPYTER_OUTPUT = "<jupyter_output>"
JUPYTER_SCRIPT = "<jupyter_script>"
EMPTY_OUTPUT = "<empty_output>"
CODE_TO_INTERMEDIATE = "<code_to_intermediate>"
INTERMEDIATE_TO_CODE = "<intermediate_to_code>"
# The pull-request tokens (spec §6.3), `<repo_name>` being the one above.
PR_EVENT = "<pr>"
PR_STATUS = "<pr_status>"
PR_IS_MERGED = "<pr_is_merged>"
PR_BASE = "<pr_base>"
PR_FILE = "<pr_file>"
PR_BASE_CODE = "<pr_base_code>"
PR_DIFF = "<pr_diff>"
PR_DIFF_HUNK = "<pr_diff_hunk>"
PR_COMMENT = "<pr_comment>"
PR_EVENT_ID = "<pr_event_id>"
PR_REVIEW = "<pr_review>"
PR_REVIEW_STATE = "<pr_review_state>"
PR_REVIEW_COMMENT = "<pr_review_comment>"
PR_IN_REPLY_TO_REVIEW_ID = "<pr_in_reply_to_review_id>"
PR_IN_REPLY_TO_COMMENT_ID = "<pr_in_reply_to_comment_id>"
PR_DIFF_HUNK_COMMENT_LINE = "<pr_diff_hunk_comment_line>"
PR_TOKENS = (
    PR_EVENT, PR_STATUS, PR_IS_MERGED, PR_BASE, PR_FILE, PR_BASE_CODE, PR_DIFF, PR_DIFF_HUNK, PR_COMMENT,
    PR_EVENT_ID, PR_REVIEW, PR_REVIEW_STATE, PR_REVIEW_COMMENT, PR_IN_REPLY_TO_REVIEW_ID, PR_IN_REPLY_TO_COMMENT_ID,
    PR_DIFF_HUNK_COMMENT_LINE,
)
# What PII redaction (the clean stage) writes in place of a name, an email address, a key, a password.
NAME = "<NAME>"
EMAIL = "<EMAIL>"
KEY = "<KEY>"
PASSWORD = "<PASSWORD>"

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
    ISSUE_CLOSED,
    JUPYTER_START,
    JUPYTER_TEXT,
    JUPYTER_CODE,
    JUPYTER_OUTPUT,
    JUPYTER_SCRIPT,
    EMPTY_OUTPUT,
    CODE_TO_INTERMEDIATE,
    INTERMEDIATE_TO_CODE,
    *PR_TOKENS,
    NAME,
    EMAIL,
    KEY,
    PASSWORD,
)
