"""PII redaction measured on planted cases (tests/pii_planted.py), its determinism, bad input, the NER hook,
and the clean stage end to end."""

from __future__ import annotations

import json
import random
import string
import sys
from collections import Counter
from pathlib import Path

import pytest

from starbuild.clean import gibberish, ips, keys, passwords
from starbuild.clean.pii import CleanConfig
from starbuild.clean.redact import Rules, detect, redact_table, redact_text, rules_from
from starbuild.clean.stage import run_clean
from starbuild.core import layout
from starbuild.core.config import typed_section
from starbuild.core.shards import list_shards, read_shard
from starbuild.core.stage import StageError
from tests.factories import raw_row, raw_table, with_overrides, write_table
from tests.pii_planted import ENTITY, LOOKALIKES, Case, corpus

MIN_PRECISION = MIN_RECALL = 0.95


def make_rules(cfg, **pii: object) -> Rules:
    """The redaction rules of `cfg`'s clean section, some `clean.pii` keys overridden."""
    return rules_from(typed_section(with_overrides(cfg, clean={"pii": pii}), "clean", CleanConfig))


@pytest.fixture(scope="module")
def rules(smoke_cfg) -> Rules:
    """The rules conf/clean/ gives."""
    return make_rules(smoke_cfg)


@pytest.fixture(scope="module")
def planted() -> list[Case]:
    """200 files of every planted kind and every look-alike kind."""
    return corpus(200)


def covered(case: Case, spans) -> bool:
    """True when every character of the planted value is inside a span of the entity it must become."""
    inside = {i for span in spans if span.kind == case.entity for i in range(span.start, span.end)}
    return set(range(case.start, case.end)) <= inside


def score(cases: list[Case], rules: Rules) -> tuple[dict[str, float], dict[str, float], dict[str, list]]:
    """Recall per planted kind, precision per entity type, and the misses and false positives."""
    found, total, true, false = Counter(), Counter(), Counter(), Counter()
    errors: dict[str, list] = {}
    for case in cases:
        spans = detect(case.text, rules, case.path)
        if case.entity:
            total[case.kind] += 1
            hit = covered(case, spans)
            found[case.kind] += hit
            if not hit:
                errors.setdefault(f"missed {case.kind}", []).append((case.path, case.value))
        for span in spans:
            right = span.kind == case.entity and span.start < case.end and case.start < span.end
            (true if right else false)[span.kind] += 1
            if not right:
                errors.setdefault(f"false {span.kind}", []).append((case.kind, case.path, span.value))
    recall = {kind: found[kind] / total[kind] for kind in total}
    precision = {kind: true[kind] / (true[kind] + false[kind]) for kind in sorted(set(true) | set(false))}
    return recall, precision, errors


def test_planted_recall_and_precision_per_type(planted, rules):
    recall, precision, errors = score(planted, rules)
    print()
    for kind, value in recall.items():
        print(f"recall    {kind:16s} {value:.3f}")
    for kind, value in precision.items():
        print(f"precision {kind:16s} {value:.3f}")
    assert set(recall) == set(ENTITY) and set(precision) == set(ENTITY.values())
    low = {k: v for k, v in {**recall, **precision}.items() if v < MIN_RECALL}
    assert not low, (low, {k: v[:5] for k, v in errors.items()})


def test_planted_corpus_is_what_it_says(planted):
    counts = Counter(case.kind for case in planted)
    assert set(counts) == set(ENTITY) | set(LOOKALIKES) and min(counts.values()) >= 200
    assert all(case.value and case.value in case.text for case in planted)
    assert corpus(3, seed=7) == corpus(3, seed=7) and corpus(3, seed=7) != corpus(3, seed=8)


def test_bigcode_rules_alone_miss_vendor_keys(planted, smoke_cfg):
    # The reason for trust_vendor_formats (conf/clean/stack_v2.yaml): BigCode's gibberish test on every key.
    bigcode = make_rules(smoke_cfg, trust_vendor_formats=False, gibberish_limit=4.0)
    recall, _, _ = score([c for c in planted if c.kind in ("aws_access_key", "slack_token")], bigcode)
    assert recall["aws_access_key"] < 0.8 and recall["slack_token"] < 0.8


# --- detectors --------------------------------------------------------------------------------------------

DNS = frozenset({"8.8.8.8", "1.1.1.1"})
IPS = [
    ('host = "93.184.216.34"', ["93.184.216.34"]),
    ("curl http://93.184.216.34:8080/x", ["93.184.216.34"]),
    ("listen [2606:4700:4700::1111]:443;", ["2606:4700:4700::1111"]),
    ("peer 2600:bc1::ab74:ac10:3ae1, ok", ["2600:bc1::ab74:ac10:3ae1"]),
    ("a,93.184.216.34,151.101.1.69;", ["93.184.216.34", "151.101.1.69"]),
    ("dns at 1.2.3.4", ["1.2.3.4"]),
    ("27.26.87.121 is not a date", ["27.26.87.121"]),
    ("version 1.2.3.4", []),
    ('<version>2.10.3.1</version>', []),
    ("foo==4.2.10.1", []),
    ("release 1.2.3.4.5", []),
    ("mask 255.255.255.0 gw 10.0.0.1 lo 127.0.0.1 mc 224.0.0.251 cgnat 100.64.1.2", []),
    ("8.8.8.8 and 1.1.1.1", []),
    ("std::vector<f32::e> x; fec0::1 fe80::1%eth0 ::1 ::", []),
    ("2024-01-31 12:30:45 31.12.2019", []),
    ("v93.184.216.34", []),
    ('KEY_USAGE = ObjectIdentifier("2.5.29.15"); ext_oid = "1.3.101.112"', []),
]


@pytest.mark.parametrize(("text", "found"), IPS)
def test_ips(text, found):
    assert [ip for _, _, ip, _ in ips.find_ips(text, DNS)] == found


PASSWORDS = [
    ('password = "hunter2xyz"', "a.py", ["hunter2xyz"]),
    ('conn = connect(user="u", password="pa55word!")', "db.py", ["pa55word!"]),
    ('  "passwd": "Tr0ub4dor&3",', "c.json", ["Tr0ub4dor&3"]),
    ("DB_PASSWORD=s3cr3t!x", ".env", ["s3cr3t!x"]),
    ("DB_PASSWORD=s3cr3t!x", "a.py", []),
    ("export PGPASSWORD=fooBar99 # local only", "run.sh", ["fooBar99"]),
    ("<password>hunt3r2</password>", "settings.xml", ["hunt3r2"]),
    ('db_pass = "abcd1234"', "a.py", ["abcd1234"]),
    ('bypass = "abcd1234"', "a.py", []),
    ('PWD = "/home/ann"', "a.py", []),
    ('password = os.environ["DB_PASSWORD"]', "a.py", []),
    ("password = getpass.getpass()", "a.py", []),
    ('if password == "abcd1234":', "a.py", []),
    ('password_hash = "abc123456"', "a.py", []),
    ("password: ${DB_PASSWORD}", "a.yaml", []),
    ('password: "{{ vault_db_password }}"', "a.yaml", []),
    ('"password": "Passwort"', "de.json", []),
    ('"password": "Enter your password"', "en.json", []),
    ('"password": "changeme"', "c.json", []),
    ("password = ''", "a.py", []),
    ("'password' => 'required|min:8'", "Rules.php", []),
]


@pytest.mark.parametrize(("text", "path", "found"), PASSWORDS)
def test_passwords(text, path, found, rules):
    assert [v for _, _, v in passwords.find_passwords(text, rules.password_placeholders, path)] == found


def test_key_hash_rules(rules):
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert keys.find_keys(f'checksum = "{digest}"\n', rules.key_rules, "a.py") == []
    key = "q8Zt3vK/xW9mPn2RbL7yHc4JdFs6GkQe1TuVa0Nz"
    line = f'secret = "{key}"\n'
    assert [v for _, _, v in keys.find_keys(line, rules.key_rules, "a.py")] == [key]
    # The file rule: "sha" or "hash" in more than 2% of the lines switches key detection off ...
    assert keys.find_keys(line + "h = hashlib.sha256(data)\n", rules.key_rules, "a.py") == []
    # ... "sha" counted as a word only: a licence's "shall" is no hash.
    assert keys.find_keys(line + "# The above notice shall be included.\n", rules.key_rules, "a.py") != []
    # Hex-only tokens shorter than 32 characters are ids; 32 and longer can be keys.
    assert keys.find_keys('trace_id = "a3f9c2e71b8d4f06"\n', rules.key_rules, "a.py") == []
    assert keys.find_keys('api_key = "74bf20f876ffc474c0251908fcdce4b3"\n', rules.key_rules, "a.py") != []


def test_key_tokens_are_widened(rules):
    stripe = "sk_live_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7" + "tU9vW1xY3zA5bC7dE9fG1"
    jwt = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
           "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
    github = f"ghp_{'a1B2c3D4' * 4}e5F6"
    text = f'stripe.api_key = "{stripe}"\ntoken = "{jwt}"\ngit clone https://u:{github}@github.com/u/r\n'
    found = [v for _, _, v in keys.find_keys(text, rules.key_rules, "a.py")]
    assert found == sorted(found, key=text.index) and stripe in found and jwt in found
    assert github in found


def test_gates_only_skip_patterns_that_cannot_match(planted, rules, monkeypatch):
    # Every gate is a necessary condition: with or without them, the same keys on planted and real files.
    stdlib = sorted(Path(string.__file__).parent.glob("[a-h]*.py"))[:60]
    texts = [(c.text, c.path) for c in planted if c.entity == "key"] + [(p.read_text(), p.name) for p in stdlib]
    gated = [keys.find_keys(text, rules.key_rules, path) for text, path in texts]
    keys.scanner.cache_clear()
    monkeypatch.setattr(keys, "GATES", {})
    try:
        assert [keys.find_keys(text, rules.key_rules, path) for text, path in texts] == gated
    finally:
        keys.scanner.cache_clear()


def test_gibberish_model_separates_words_from_keys(rules):
    limit = rules.key_rules.gibberish_limit
    words = ["getattribute", "configuration", "DatabaseConnection", "serialize_response", "authentication",
             "StackOverflowError", "initializer", "requirements", "documentation", "ProcessPoolExecutor"]
    rng = random.Random(0)
    randoms = ["".join(rng.choice(string.ascii_letters + string.digits) for _ in range(32)) for _ in range(50)]
    assert not any(gibberish.is_gibberish(w, limit) for w in words)
    assert sum(gibberish.is_gibberish(r, limit) for r in randoms) >= 45


def test_gibberish_model_file_is_the_trained_model():
    data = json.loads(gibberish.MODEL_PATH.read_text())
    assert data["source"] == "pydoc_data.topics" and set(data["charset"]) == set(string.ascii_letters)
    if data["python"] != gibberish.python_version():
        pytest.skip(f"model trained on CPython {data['python']}'s pydoc topics, this is {sys.version}")
    assert gibberish.serialize(gibberish.train()) == gibberish.MODEL_PATH.read_text()


# --- redaction: replacements, determinism, overlaps, bad input ---------------------------------------------

FILE = (
    "# Maintainer: Ann Lee <ann.lee@example.org>\n"
    'PRIMARY = "93.184.216.34"\nREPLICA = "151.101.1.69"\nFALLBACK = "93.184.216.34"\n'
    'V6 = "2a00:1450:4001:82b::200e"\nGH = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"\n'
    'OTHER = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"\npassword = "hunter2xyz"\n'
)


def test_replacements_follow_section_4_4(rules):
    out, counts = redact_text(FILE, rules, "blob-1", "settings.py")
    assert counts == Counter({"ipv4": 3, "key": 2, "email": 1, "ipv6": 1, "password": 1})
    assert "<ann.lee" not in out and "Ann Lee <<EMAIL>>" in out and 'password = "<PASSWORD>"' in out
    assert out.count('"<KEY>"') == 2 and "ghp_" not in out
    values = dict(line.split(" = ") for line in out.splitlines()[1:6])
    assert values["PRIMARY"] == values["FALLBACK"] and values["PRIMARY"].strip('"') in rules.ipv4_pool
    assert values["REPLICA"].strip('"') in rules.ipv4_pool and values["V6"].strip('"') in rules.ipv6_pool


def test_replacements_are_seeded_by_blob_id(rules):
    text = " ".join(f"10{i}.184.216.34" for i in range(8)) + "\n"
    first = redact_text(text, rules, "blob-1")[0]
    assert redact_text(text, rules, "blob-1")[0] == first
    others = {redact_text(text, rules, f"blob-{i}")[0] for i in range(2, 8)}
    assert len(others | {first}) > 1


def test_overlapping_matches_resolve_to_one_span_each(rules):
    text = ("see mailto:ops@example.com?ip=93.184.216.34 and https://admin:ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
            "@93.184.216.34/repo and ssh root@151.101.1.69\n")
    spans = detect(text, rules, "README.md")
    assert [(s.kind, s.value) for s in spans] == [
        ("email", "ops@example.com"), ("ipv4", "93.184.216.34"),
        ("key", "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"), ("ipv4", "93.184.216.34"), ("ipv4", "151.101.1.69"),
    ]
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))


def test_huge_single_line_and_binary_looking_text(rules):
    rng = random.Random(1)
    chunk = "".join(rng.choice(string.ascii_letters + string.digits + "+/=.:@ _-\"'") for _ in range(4096))
    huge = chunk * 1280 + ' ip="93.184.216.34" mail=ann@example.org'
    assert len(huge) > 5_000_000 and "\n" not in huge
    out, counts = redact_text(huge, rules, "big", "min.js")
    assert out.endswith(" mail=<EMAIL>") and counts["ipv4"] >= 1 and counts["email"] >= 1
    binary = bytes(rng.randrange(256) for _ in range(100_000)).decode("latin-1")
    assert redact_text(binary, rules, "bin")[0] == redact_text(binary, rules, "bin")[0]


def test_detector_failure_drops_the_file_and_counts_it(rules, monkeypatch):
    table = raw_table([raw_row("r/a", "ok.py", "x = 1\n"), raw_row("r/a", "bad.py", "boom\n")])
    real = keys.find_keys

    def flaky(text, *args, **kwargs):
        if text == "boom\n":
            raise RecursionError("pathological input")
        return real(text, *args, **kwargs)

    monkeypatch.setattr(keys, "find_keys", flaky)
    out, counts = redact_table(table, rules)
    assert out.column("path").to_pylist() == ["ok.py"] and counts["files_pii_failed"] == 1


# --- the NER hook ----------------------------------------------------------------------------------------------

LABELS = ["O", "B-NAME", "I-NAME", "B-KEY", "I-KEY", "B-IP_ADDRESS", "I-IP_ADDRESS", "B-EMAIL", "I-EMAIL",
          "B-PASSWORD", "I-PASSWORD", "B-USERNAME", "I-USERNAME"]
# The tiny model's vocabulary and the tag it gives each word (everything else is [UNK], tagged O).
TAGS = {"alice": "B-NAME", "smith": "I-NAME", "john": "B-NAME", "zq8xk2vm9wp4": "B-KEY", "hello": "B-KEY",
        "151": "B-IP_ADDRESS", "101": "I-IP_ADDRESS", "1": "I-IP_ADDRESS", "69": "I-IP_ADDRESS",
        ".": "I-IP_ADDRESS", "bob": "B-USERNAME", "the": "O"}


def tiny_ner_model(path: Path) -> Path:
    """A BERT token classifier that tags each word of TAGS with its tag: random init, then set by hand.

    No encoder layers; each word's embedding is one-hot at its label, the classifier the identity, so
    the model's output is known and the test checks the wiring (windows, offsets, acceptance), not accuracy.
    """
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TAGS]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(path)
    hidden = 16
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=0, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=512, id2label=dict(enumerate(LABELS)),
                        label2id={label: i for i, label in enumerate(LABELS)})
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    with torch.no_grad():
        embeddings = torch.zeros(len(vocab), hidden)
        for index, word in enumerate(vocab):
            embeddings[index, LABELS.index(TAGS.get(word, "O"))] = 10.0
        model.bert.embeddings.word_embeddings.weight.copy_(embeddings)
        model.bert.embeddings.position_embeddings.weight.zero_()
        model.bert.embeddings.token_type_embeddings.weight.zero_()
        model.classifier.weight.copy_(torch.eye(len(LABELS), hidden))
        model.classifier.bias.zero_()
    model.save_pretrained(path)
    return path


def test_ner_hook_windows_offsets_and_acceptance(tmp_path, smoke_cfg):
    model = tiny_ner_model(tmp_path / "ner")
    cfg = with_overrides(smoke_cfg, clean={"ner_model": str(model)})
    rules = rules_from(typed_section(cfg, "clean", CleanConfig))
    # 700 words first: the entities are in the second 512-token window.
    text = "the " * 700 + "alice smith met john at 151.101.1.69, key zq8xk2vm9wp4 not hello; bob\n"
    out, counts = redact_text(text, rules, "blob")
    tail = out[len("the " * 700):]
    assert tail.startswith("<NAME> met john at ")
    assert ", key <KEY> not hello; bob\n" in tail
    assert counts == Counter({"name": 1, "key": 1, "ipv4": 1})
    # Without the model, only the regex detectors: the IP alone.
    assert redact_text(text, make_rules(smoke_cfg), "blob")[1] == Counter({"ipv4": 1})


def test_missing_ner_model_fails_at_stage_start(tmp_path, make_context, smoke_cfg):
    write_table(tmp_path / layout.DEDUP, [[raw_row("r/a", "a.py", "x = 1\n")]])
    cfg = with_overrides(smoke_cfg, clean={"ner_model": "models/nowhere"})
    with pytest.raises(StageError, match=r"^clean.ner_model: no model directory at .*models/nowhere"):
        run_clean(make_context("clean", cfg))


# --- the stage end to end ----------------------------------------------------------------------------------


def stage_cases() -> list[Case]:
    """Two files of every planted kind and every look-alike kind."""
    return corpus(2, seed=11)


def test_stage_redacts_planted_pii_and_counts_it(tmp_path, make_context):
    cases = stage_cases()
    rows = [raw_row(f"r/{i % 3}", f"{i:03d}/{case.path}", case.text) for i, case in enumerate(cases)]
    write_table(tmp_path / layout.DEDUP, [rows[:20], rows[20:]])
    run_clean(make_context("clean"))

    out = [row for path in list_shards(tmp_path / layout.CLEAN) for row in read_shard(path).to_pylist()]
    assert [row["path"] for row in out] == [row["path"] for row in rows]
    for case, row in zip(cases, out, strict=True):
        if case.entity:
            assert case.value not in row["content"] and row["pii_redactions"] >= 1, case
        else:
            assert row["content"] == case.text and row["pii_redactions"] == 0, case
    metrics = json.loads((tmp_path / "metrics/clean.json").read_text())
    expected = Counter(ENTITY[case.kind] for case in cases if case.entity)
    assert metrics["pii"] == {kind: expected.get(kind, 0) for kind in ("email", "ipv4", "ipv6", "key", "password",
                                                                       "name")}
    assert metrics["files_with_pii"] == sum(1 for case in cases if case.entity)
    assert metrics["pii_redacted"] == sum(row["pii_redactions"] for row in out)
    assert metrics["files_pii_failed"] == 0
