"""Release and pull against real remotes on this machine: a local directory and an S3 server (moto).

One smoke build is released per remote kind with `python -m starbuild.release` (what `make release`
runs) to a bare git repository and the remote; fresh clones of the bare repository then pull it.
The S3 server runs in its own process on 127.0.0.1 with authentication on, so wrong credentials
are refused as a real S3 would.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SmokeBuild
from tests.projects import SMOKE, free_port, lock_md5s, moto_server, run, sh, stages_run

pytestmark = pytest.mark.e2e

BUCKET = "starbuild-releases"
VERSION = "v0.1.0"
ARTIFACTS = ("tokenizer", "dedup-dataset", "model", "eval-metrics")


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key_id: str
    secret: str

    def env(self) -> dict[str, str]:
        """The environment a consumer passes its credentials in (never a committed file)."""
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):  # boto3 generates the client's type
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 that checks credentials after its first three (IAM set-up) calls."""
    import boto3

    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as endpoint:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="releaser")
        key = iam.create_access_key(UserName="releaser")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="releaser", PolicyName="s3", PolicyDocument=json.dumps(policy))
        found = S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        found.client().create_bucket(Bucket=BUCKET)
        yield found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, smoke_build: SmokeBuild) -> Path:
    """The smoke DAG built and committed once; each release works on a copy."""
    project = smoke_build.copy_to(tmp_path_factory.mktemp("built") / "project")
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "built")
    return project


@dataclass(frozen=True)
class Released:
    kind: str
    project: Path
    origin: Path
    remote: str
    # A directory for the local remote, the key prefix in the bucket for S3.
    location: str
    consumer_env: dict[str, str]


@pytest.fixture(scope="module", params=["local", "s3"])
def released(request: pytest.FixtureRequest, built: Path, s3: S3Server,
             tmp_path_factory: pytest.TempPathFactory) -> Released:
    """The build released as v0.1.0 to a bare git repository and a `local` directory or `s3` remote."""
    kind = request.param
    base = tmp_path_factory.mktemp(f"release_{kind}")
    project = base / "project"
    shutil.copytree(built, project, symlinks=True)
    origin = base / "origin.git"
    sh(base, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    sh(project, "git", "branch", "-M", "main")
    sh(project, "git", "remote", "add", "origin", str(origin))
    if kind == "local":
        remote, location, env = "store", str(base / "store"), {}
        sh(project, "dvc", "remote", "modify", "store", "url", location)
    else:
        remote, location, env = "s3", base.name, s3.env()
        sh(project, "dvc", "remote", "add", "--default", "s3", f"s3://{BUCKET}/{location}")
        sh(project, "dvc", "remote", "modify", "s3", "endpointurl", s3.endpoint)
        # The releaser's keys stay in .dvc/config.local, which DVC keeps out of git.
        sh(project, "dvc", "remote", "modify", "--local", "s3", "access_key_id", s3.key_id)
        sh(project, "dvc", "remote", "modify", "--local", "s3", "secret_access_key", s3.secret)
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", f"release to a {kind} remote")
    output = sh(project, "python", "-m", "starbuild.release", VERSION)
    assert f"released {VERSION}" in output
    tags = sh(origin, "git", "tag", "--list").split()
    assert sorted(tags) == sorted(f"{name}@{VERSION}" for name in ARTIFACTS)
    assert "secret_access_key" not in sh(project, "git", "show", "HEAD:.dvc/config")
    return Released(kind, project, origin, remote, location, env)


def clone(released: Released, dest: Path) -> Path:
    sh(dest.parent, "git", "clone", "-q", str(released.origin), str(dest))
    return dest


def md5_tree(path: Path) -> dict[str, str]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def test_pull_restores_every_out_and_repro_does_nothing(released: Released, tmp_path: Path) -> None:
    consumer = clone(released, tmp_path / "consumer")
    sh(consumer, "dvc", "pull", extra_env=released.consumer_env)
    assert "Data and pipelines are up to date." in sh(consumer, "dvc", "status")
    output = sh(consumer, "dvc", "repro", extra_env=released.consumer_env)
    assert stages_run(output) == [] and "Data and pipelines are up to date." in output
    assert lock_md5s(consumer) == lock_md5s(released.project)
    for out in ("data/dedup", "models/hf", "models/tokenizer"):
        assert md5_tree(consumer / out) == md5_tree(released.project / out), out


def test_pull_of_one_out_fetches_it_alone(released: Released, tmp_path: Path) -> None:
    consumer = clone(released, tmp_path / "consumer")
    sh(consumer, "dvc", "pull", "models/hf", extra_env=released.consumer_env)
    assert md5_tree(consumer / "models/hf") == md5_tree(released.project / "models/hf")
    assert not (consumer / "data/raw").exists() and not (consumer / "models/checkpoints").exists()


def test_artifacts_get_by_version_without_a_clone(released: Released, tmp_path: Path) -> None:
    sh(tmp_path, "dvc", "artifacts", "get", str(released.origin), "model", "--rev", VERSION, "-o", "model",
       extra_env=released.consumer_env)
    assert md5_tree(tmp_path / "model") == md5_tree(released.project / "models/hf")
    code = ("import sys; from starbuild.artifacts import get; "
            "print(get(sys.argv[1], version=sys.argv[2], repo=sys.argv[3], cache_dir=sys.argv[4]))")
    for name, out in (("tokenizer", "models/tokenizer"), ("eval-metrics", "metrics/eval.json")):
        printed = sh(tmp_path, "python", "-c", code, name, VERSION, str(released.origin), str(tmp_path / "cache"),
                     extra_env=released.consumer_env)
        local = Path(printed.strip().splitlines()[-1])
        assert md5_tree(local) == md5_tree(released.project / out), name


def test_experiments_are_shared_with_their_outputs(released: Released, tmp_path: Path) -> None:
    name = f"short-eval-{released.kind}"
    sh(released.project, "dvc", "exp", "run", "-S", SMOKE, "-S", "eval.perplexity.max_tokens=1024", "--name", name)
    # Back to the release in the workspace; the experiment lives on as a git ref and cached outs.
    sh(released.project, "git", "checkout", "--", ".")
    sh(released.project, "dvc", "checkout")
    sh(released.project, "dvc", "exp", "push", "origin", name)
    consumer = clone(released, tmp_path / "consumer")
    sh(consumer, "dvc", "exp", "pull", "origin", name, extra_env=released.consumer_env)
    assert name in sh(consumer, "dvc", "exp", "list", "--all-commits", "--name-only").split()
    sh(consumer, "dvc", "exp", "apply", name, extra_env=released.consumer_env)
    assert json.loads((consumer / "metrics/eval.json").read_text())["val/tokens"] <= 1024
    assert (consumer / "reports/summary.md").is_file()


def test_releasing_a_version_twice_or_from_a_dirty_workspace_is_refused(released: Released) -> None:
    again = run(released.project, "python", "-m", "starbuild.release", VERSION)
    assert again.returncode == 2
    assert again.stderr.strip() == (f"error: release: tag tokenizer@{VERSION} exists: {VERSION} is released "
                                    "already; choose another VERSION")
    readme = released.project / "README.md"
    readme.write_text(readme.read_text() + "\nedited\n")
    try:
        dirty = run(released.project, "python", "-m", "starbuild.release", "v0.2.0")
    finally:
        sh(released.project, "git", "checkout", "--", "README.md")
    assert dirty.returncode == 2 and len(dirty.stderr.strip().splitlines()) == 1
    assert "the workspace has uncommitted changes (M README.md, …)" in dirty.stderr
    assert "tokenizer@v0.2.0" not in sh(released.origin, "git", "tag", "--list")


def out_paths_present(project: Path) -> list[str]:
    return [p for p in ("data/raw", "data/dedup", "models/hf", "models/tokenizer") if (project / p).exists()]


def test_an_unreachable_remote_fails_clearly_and_leaves_nothing(released: Released, tmp_path: Path) -> None:
    consumer = clone(released, tmp_path / "consumer")
    if released.kind == "local":
        sh(consumer, "dvc", "remote", "modify", "--local", released.remote, "url", str(tmp_path / "unmounted"))
    else:
        sh(consumer, "dvc", "remote", "modify", "--local", released.remote, "endpointurl",
           f"http://127.0.0.1:{free_port()}")
        sh(consumer, "dvc", "remote", "modify", "--local", released.remote, "connect_timeout", "2")
    pulled = run(consumer, "dvc", "pull", extra_env={**released.consumer_env, "AWS_MAX_ATTEMPTS": "1"})
    assert pulled.returncode != 0
    errors = [line for line in pulled.stderr.splitlines() if line.startswith("ERROR")]
    assert errors, pulled.stderr
    assert out_paths_present(consumer) == []


def test_a_missing_object_in_the_remote_is_named(released: Released, s3: S3Server, tmp_path: Path) -> None:
    # The tokenizer is one file: its md5 names its object in the remote.
    md5 = hashlib.md5((released.project / "models/tokenizer/tokenizer.json").read_bytes()).hexdigest()
    key = f"files/md5/{md5[:2]}/{md5[2:]}"
    store, prefix = Path(released.location), released.location
    if released.kind == "local":
        backup = (store / key).read_bytes()
        (store / key).unlink()
    else:
        backup = s3.client().get_object(Bucket=BUCKET, Key=f"{prefix}/{key}")["Body"].read()
        s3.client().delete_object(Bucket=BUCKET, Key=f"{prefix}/{key}")
    try:
        consumer = clone(released, tmp_path / "consumer")
        pulled = run(consumer, "dvc", "pull", "models/tokenizer", extra_env=released.consumer_env)
    finally:
        if released.kind == "local":
            (store / key).write_bytes(backup)
        else:
            s3.client().put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=backup)
    # DVC names the missing object by its md5 (the file's, as in dvc.lock's .dir listing).
    assert pulled.returncode != 0
    assert any(line.startswith("ERROR") and md5 in line for line in pulled.stderr.splitlines()), pulled.stderr
    assert not (consumer / "models/tokenizer/tokenizer.json").exists()


@pytest.mark.parametrize("released", ["s3"], indirect=True)
def test_wrong_credentials_are_refused(released: Released, tmp_path: Path) -> None:
    consumer = clone(released, tmp_path / "consumer")
    wrong = {**released.consumer_env, "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG", "AWS_MAX_ATTEMPTS": "1"}
    pulled = run(consumer, "dvc", "pull", extra_env=wrong)
    assert pulled.returncode != 0
    assert any(line.startswith("ERROR") for line in pulled.stderr.splitlines()), pulled.stderr
    assert out_paths_present(consumer) == []
