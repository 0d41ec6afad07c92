"""A seeded, labelled PII corpus: fake secrets planted in realistic code and config files, and look-alikes.

Every file holds one planted item in a snippet of the kind of file it is found in (a boto3 client, a
`.env`, a docker-compose service, a GCP service-account JSON, an nginx upstream, a package.json, ...).
Secrets are fake but have the real formats: AWS access key ids (`AKIA` + 16 of A-Z0-9) and secret keys
(40 base64 characters), GitHub tokens (`ghp_`… + 36), Slack bot/user tokens and webhooks, Stripe live
keys (24 or 99 characters), PEM private keys (random DER-sized base64 bodies, 64-character lines),
passwords in ini/yaml/json/py/env/properties/xml/js files, public IPv4 and IPv6 addresses, and emails
in comments, strings and metadata. Look-alikes must be left alone: UUIDs, git commit ids, sha256 sums
next to "sha256", version numbers, private IPs, the 14 DNS servers, dates, retina asset names,
decorators and scoped packages, password placeholders (`""`, `${VAR}`, `os.environ[...]`, labels),
short hex ids (schema/trace ids, MongoDB ObjectIds) and ASN.1 OIDs.

`corpus(n, seed)` gives `n` files of every planted kind and every look-alike kind. Each Case records
the exact span of what it planted, so precision and recall are measured on character spans.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

# Planted kind -> the entity type that must replace it.
ENTITY = {
    "aws_access_key": "key",
    "aws_secret_key": "key",
    "github_token": "key",
    "slack_token": "key",
    "stripe_key": "key",
    "private_key": "key",
    "password": "password",
    "ipv4": "ipv4",
    "ipv6": "ipv6",
    "email": "email",
}
LOOKALIKES = ("uuid", "git_hash", "sha256", "version", "private_ip", "dns_server", "date", "retina", "decorator",
              "password_placeholder", "hex_id", "oid")
DNS = ("8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "76.76.19.19", "76.223.122.150", "9.9.9.9", "149.112.112.112",
       "208.67.222.222", "208.67.220.220", "8.26.56.26", "8.20.247.20", "94.140.14.14", "94.140.15.15")
FIRST = ("anna", "ben", "carla", "dmitri", "elena", "farid", "grace", "hiro", "ines", "jonas", "kofi", "lena",
         "marco", "nadia", "oscar", "priya", "quentin", "rosa", "sven", "tamar", "umar", "vera", "wei", "yusuf")
LAST = ("garcia", "smith", "novak", "tanaka", "okafor", "schmidt", "rossi", "kowalski", "silva", "nguyen",
        "haddad", "larsen", "murphy", "dubois", "ivanova", "kim", "patel", "moreau", "fischer", "costa")
DOMAINS = ("gmail.com", "outlook.com", "acme-corp.io", "example-mail.org", "uni-hamburg.de", "proton.me",
           "company.co.uk", "startup.dev", "fastmail.fm", "research.edu")
WORDS = ("orders", "billing", "search", "inventory", "gateway", "reports", "analytics", "users", "catalog", "auth")


@dataclass(frozen=True)
class Case:
    """One file: its path and text, and the span and kind of what was planted in it."""

    path: str
    text: str
    kind: str
    start: int
    end: int

    @property
    def entity(self) -> str | None:
        """The entity type the planted item must become, or None for a look-alike that must stay."""
        return ENTITY.get(self.kind)

    @property
    def value(self) -> str:
        """The planted text."""
        return self.text[self.start:self.end]


def plant(path: str, template: str, kind: str, value: str, fields: dict[str, str] | None = None) -> Case:
    """`template` with every `{v}` replaced by `value` and, given `fields`, its other `{…}` fields filled.

    The Case's span is the first `{v}`'s; a template without `fields` is used literally.
    """
    parts = template.split("{v}")
    if fields is not None:
        parts = [part.format(**fields) for part in parts]
    return Case(path, value.join(parts), kind, len(parts[0]), len(parts[0]) + len(value))


def rand(rng: random.Random, charset: str, n: int) -> str:
    """`n` characters drawn from `charset`."""
    return "".join(rng.choice(charset) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
B64 = string.ascii_letters + string.digits + "+/"
HEX = "0123456789abcdef"


def fill(rng: random.Random) -> dict[str, str]:
    """Harmless names for the other fields of a template."""
    return {"svc": rng.choice(WORDS), "user": rng.choice(FIRST), "region": rng.choice(["us-east-1", "eu-west-1"]),
            "port": str(rng.choice([5432, 3306, 6379, 8080, 443]))}


# --- planted secrets --------------------------------------------------------------------------------------

AWS_ACCESS = [
    ("settings.py", 'import os\n\nAWS_ACCESS_KEY_ID = "{v}"\nAWS_REGION = "{region}"\nBUCKET = "{svc}-assets"\n'),
    ("client.py", "import boto3\n\ns3 = boto3.client(\n    's3',\n    aws_access_key_id='{v}',\n"
                  "    region_name='{region}',\n)\n"),
    (".env", "APP_ENV=production\nAWS_ACCESS_KEY_ID={v}\nAWS_DEFAULT_REGION={region}\n"),
    ("credentials", "[default]\naws_access_key_id = {v}\nregion = {region}\n"),
    ("deploy.yml", "provider:\n  name: aws\n  region: {region}\n  accessKeyId: {v}\n"),
    ("config.json", '{{\n  "region": "{region}",\n  "accessKeyId": "{v}",\n  "bucket": "{svc}"\n}}\n'),
    ("upload.js", "const AWS = require('aws-sdk');\n"
                  "AWS.config.update({{ accessKeyId: '{v}', region: '{region}' }});\n"),
]
AWS_SECRET = [
    ("settings.py", 'AWS_ACCESS_KEY_ID = os.environ["AWS_ACCESS_KEY_ID"]\nAWS_SECRET_ACCESS_KEY = "{v}"\n'),
    ("client.py", "s3 = boto3.resource(\n    's3',\n    aws_secret_access_key='{v}',\n)\n"),
    (".env", "AWS_DEFAULT_REGION={region}\nAWS_SECRET_ACCESS_KEY={v}\n"),
    ("credentials", "[{svc}]\naws_secret_access_key = {v}\nregion = {region}\n"),
    ("values.yaml", "aws:\n  region: {region}\n  aws_secret_key: {v}\n"),
    ("upload.js", "const s3 = new AWS.S3({{\n  region: '{region}',\n  secretAccessKey: '{v}',\n}});\n"),
]
GITHUB = [
    (".env", "GITHUB_TOKEN={v}\nGITHUB_OWNER={user}\n"),
    ("release.py", 'import requests\n\nheaders = {{"Authorization": "token {v}"}}\n'
                   "requests.get(url, headers=headers)\n"),
    ("ci.yml", "env:\n  GH_TOKEN: {v}\n  REPO: {user}/{svc}\n"),
    ("bot.js", 'const {{ Octokit }} = require("@octokit/rest");\nconst octokit = new Octokit({{ auth: "{v}" }});\n'),
    ("clone.sh", '#!/bin/sh\ngit clone "https://{user}:{v}@github.com/{user}/{svc}.git"\n'),
]
SLACK = [
    (".env", "SLACK_BOT_TOKEN={v}\nSLACK_CHANNEL=#{svc}\n"),
    ("notify.py", 'from slack_sdk import WebClient\n\nclient = WebClient(token="{v}")\n'
                  'client.chat_postMessage(channel="#{svc}", text="done")\n'),
    ("alerts.yaml", "slack:\n  channel: '#{svc}'\n  token: {v}\n"),
    ("hook.js", "const SLACK_TOKEN = '{v}';\n"),
]
STRIPE = [
    ("payments.py", 'import stripe\n\nstripe.api_key = "{v}"\n'),
    (".env", "STRIPE_SECRET_KEY={v}\nSTRIPE_CURRENCY=eur\n"),
    ("server.js", "const stripe = require('stripe')('{v}');\n"),
    ("Checkout.php", "<?php\n\\Stripe\\Stripe::setApiKey('{v}');\n"),
    ("config.yml", "stripe:\n  secret_key: {v}\n  currency: usd\n"),
]
PASSWORD = [
    ("config.ini", "[database]\nhost = db.internal\nuser = {user}\npassword = {v}\nport = {port}\n"),
    ("database.yml", "production:\n  adapter: postgresql\n  username: {user}\n  password: {v}\n"),
    ("app.yaml", "db:\n  user: {user}\n  password: \"{v}\"\n"),
    ("config.json", '{{\n  "db": {{\n    "user": "{user}",\n    "password": "{v}"\n  }}\n}}\n'),
    ("settings.py", "DATABASES = {{\n    'default': {{\n        'USER': '{user}',\n"
                    "        'PASSWORD': '{v}',\n    }}\n}}\n"),
    ("db.py", 'conn = psycopg2.connect(host="db", user="{user}", password="{v}")\n'),
    ("mail.py", 'EMAIL_HOST_USER = "{user}"\nEMAIL_HOST_PASSWORD = "{v}"\n'),
    (".env", "DB_USER={user}\nDB_PASSWORD={v}\n"),
    ("docker-compose.yml", "services:\n  db:\n    image: mysql:8\n    environment:\n      - MYSQL_ROOT_PASSWORD={v}\n"),
    ("application.properties", "spring.datasource.username={user}\nspring.datasource.password={v}\n"),
    ("settings.xml", "<server>\n  <id>{svc}</id>\n  <username>{user}</username>\n"
                     "  <password>{v}</password>\n</server>\n"),
    ("knexfile.js", "module.exports = {{\n  connection: {{ user: '{user}', password: '{v}' }},\n}};\n"),
]
IPV4 = [
    ("settings.py", 'SERVER_IP = "{v}"\nPORT = {port}\n'),
    ("upstream.conf", "upstream {svc} {{\n    server {v}:{port};\n}}\n"),
    ("deploy.sh", "#!/bin/sh\nssh deploy@{v} 'systemctl restart {svc}'\n"),
    ("health.sh", "curl -fsS http://{v}/{svc}/health\n"),
    ("hosts", "{v}\t{svc}.internal\n"),
    ("app.log", "2023-11-02 10:15:01 INFO connection from {v} port 51234\n"),
    ("inventory.yml", "all:\n  hosts:\n    {svc}:\n      ansible_host: {v}\n"),
    ("client.go", 'conn, err := net.Dial("tcp", "{v}:{port}")\n'),
    ("allow.json", '{{"allowed_ips": ["{v}"]}}\n'),
]
IPV6 = [
    ("site.conf", "server {{\n    listen [{v}]:443 ssl;\n}}\n"),
    ("settings.py", 'BIND_ADDRESS = "{v}"\n'),
    ("zone.txt", "{svc}  IN  AAAA  {v}\n"),
    ("check.sh", "ping6 -c 3 {v}\n"),
    ("peers.json", '{{"peer": "{v}", "port": {port}}}\n'),
    ("fetch.py", 'url = "http://[{v}]:{port}/{svc}"\n'),
]
EMAIL = [
    ("util.py", "# Author: {name} <{v}>\n\ndef f():\n    return 1\n"),
    ("__init__.py", '__author__ = "{name}"\n__email__ = "{v}"\n'),
    ("package.json", '{{\n  "name": "{svc}",\n  "author": "{name} <{v}>"\n}}\n'),
    ("notify.py", 'send_mail("Report", body, settings.DEFAULT_FROM_EMAIL, ["{v}"])\n'),
    ("Dockerfile", 'FROM python:3.11\nLABEL maintainer="{v}"\n'),
    ("Main.java", "/**\n * @author {name} ({v})\n */\npublic class Main {{}}\n"),
    ("setup.sh", 'git config user.email "{v}"\n'),
    ("README.md", "Questions? Write to {v}.\n"),
]


def aws_access(rng: random.Random) -> str:
    """An AWS access key id."""
    return rng.choice(["AKIA", "ASIA"]) + rand(rng, UPPER, 16)


def aws_secret(rng: random.Random) -> str:
    """An AWS secret access key."""
    return rand(rng, B64, 40)


def github(rng: random.Random) -> str:
    """A GitHub token (personal, OAuth, user-to-server, server-to-server, refresh)."""
    return rng.choice(["ghp", "gho", "ghu", "ghs", "ghr"]) + "_" + rand(rng, ALNUM, 36)


def slack(rng: random.Random) -> str:
    """A Slack bot or user token, or an incoming-webhook URL."""
    roll = rng.random()
    if roll < 0.4:
        return f"xoxb-{rand(rng, string.digits, 12)}-{rand(rng, string.digits, 13)}-{rand(rng, ALNUM, 24)}"
    if roll < 0.8:
        return (f"xoxp-{rand(rng, string.digits, 12)}-{rand(rng, string.digits, 12)}-"
                f"{rand(rng, string.digits, 13)}-{rand(rng, HEX, 32)}")
    return (f"https://hooks.slack.com/services/T{rand(rng, UPPER, 8)}/B{rand(rng, UPPER, 10)}/"
            f"{rand(rng, ALNUM, 24)}")


def stripe(rng: random.Random) -> str:
    """A Stripe live secret or restricted key, old (24) or new (99) length."""
    return rng.choice(["sk_live_", "rk_live_"]) + rand(rng, ALNUM, rng.choice([24, 99]))


def password(rng: random.Random) -> str:
    """A realistic password: word+digits+symbol, random, or a hyphenated passphrase."""
    roll = rng.random()
    if roll < 0.35:
        word = rng.choice(["Summer", "winter", "Dragon", "monkey", "Falcon", "purple", "Tiger", "sunshine"])
        return f"{word}{rng.randint(10, 9999)}{rng.choice('!@%&*?')}"
    if roll < 0.7:
        return rng.choice(string.ascii_letters) + rand(rng, ALNUM + "!@%^&*-_+=.?", rng.randint(9, 19))
    return "-".join(rng.choice(["correct", "horse", "battery", "staple", "orbit", "maple", "copper", "violet"])
                    for _ in range(3)) + str(rng.randint(1, 99))


def public_ipv4(rng: random.Random) -> str:
    """A random global unicast IPv4 address that is not one of the DNS servers."""
    while True:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        text = str(address)
        if (address.is_global and not address.is_multicast and not address.is_reserved and text not in DNS
                and len(text) > 7):
            return text


def public_ipv6(rng: random.Random) -> str:
    """A random global unicast IPv6 address in a real allocation, compressed as `ipaddress` writes it."""
    prefix = rng.choice([0x2A00, 0x2A01, 0x2A02, 0x2600, 0x2604, 0x2607, 0x2400, 0x2404, 0x2C0F, 0x2800])
    groups = [prefix] + [rng.getrandbits(16) for _ in range(7)]
    if rng.random() < 0.5:
        # A run of zero groups, as many real addresses have (written with ::).
        at = rng.randint(2, 5)
        groups[at:at + rng.randint(2, 3)] = [0] * 3
        groups = groups[:8]
    address = ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups))
    return address.compressed if rng.random() < 0.7 else address.exploded


def email(rng: random.Random) -> str:
    """A personal or role email address."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([f"{first}.{last}", f"{first}{rng.randint(1, 99)}", f"{first[0]}{last}", f"{first}_{last}"])
    return f"{local}@{rng.choice(DOMAINS)}"


def pem_case(rng: random.Random) -> Case:
    """A PEM private key in a .pem file, a Python string, a YAML block or a service-account JSON."""
    header = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = base64.b64encode(rng.randbytes(rng.choice([121, 609, 1192]))).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    begin, end = f"-----BEGIN {header}-----", f"-----END {header}-----"
    form = rng.randrange(4)
    if form == 0:
        return plant("id_rsa.pem", begin + "\n{v}\n" + end + "\n", "private_key", "\n".join(lines))
    if form == 1:
        return plant("keys.py", f'PRIVATE_KEY = """{begin}\n{{v}}\n{end}\n"""\n', "private_key", "\n".join(lines))
    if form == 2:
        text = "\n    ".join(lines)
        return plant("secrets.yaml", f"tls:\n  key: |\n    {begin}\n    {{v}}\n    {end}\n", "private_key", text)
    escaped = "\\n".join(lines)
    return plant("service-account.json",
                 f'{{\n  "type": "service_account",\n  "private_key": "{begin}\\n{{v}}\\n{end}\\n"\n}}\n',
                 "private_key", escaped)


def templated(templates: list[tuple[str, str]], make: Callable[[random.Random], str], kind: str) -> Callable:
    """A case maker: one of `templates`, the value from `make`."""

    def case(rng: random.Random) -> Case:
        path, template = rng.choice(templates)
        name = f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}"
        return plant(path, template, kind, make(rng), {"name": name, **fill(rng)})

    return case


PLANTED: dict[str, Callable[[random.Random], Case]] = {
    "aws_access_key": templated(AWS_ACCESS, aws_access, "aws_access_key"),
    "aws_secret_key": templated(AWS_SECRET, aws_secret, "aws_secret_key"),
    "github_token": templated(GITHUB, github, "github_token"),
    "slack_token": templated(SLACK, slack, "slack_token"),
    "stripe_key": templated(STRIPE, stripe, "stripe_key"),
    "private_key": pem_case,
    "password": templated(PASSWORD, password, "password"),
    "ipv4": templated(IPV4, public_ipv4, "ipv4"),
    "ipv6": templated(IPV6, public_ipv6, "ipv6"),
    "email": templated(EMAIL, email, "email"),
}

# --- look-alikes ------------------------------------------------------------------------------------------

UUID = [
    ("handler.py", 'REQUEST_ID = "{v}"\n'),
    ("fixtures.json", '{{"id": "{v}", "name": "{svc}"}}\n'),
    ("Project.csproj", "<ProjectGuid>{{{v}}}</ProjectGuid>\n"),
    ("migration.sql", "INSERT INTO {svc} (uuid) VALUES ('{v}');\n"),
]
GIT_HASH = [
    (".pre-commit-config.yaml", "repos:\n  - repo: https://github.com/psf/black\n    rev: {v}\n"),
    ("lock.json", '{{"{svc}": {{"commit": "{v}"}}}}\n'),
    ("version.py", 'GIT_REVISION = "{v}"\n'),
    ("Cargo.lock", '[[package]]\nname = "{svc}"\nsource = "git+https://github.com/o/{svc}?rev={v}#{v}"\n'),
    ("build.sh", "git checkout {v}\n"),
]
SHA256 = [
    ("Dockerfile", "ARG TINI_SHA256={v}\nRUN echo \"$TINI_SHA256  /tini\" | sha256sum -c -\n"),
    ("deps.bzl", 'http_archive(\n    name = "{svc}",\n    sha256 = "{v}",\n)\n'),
    ("manifest.json", '{{"file": "{svc}.tar.gz", "sha256": "{v}"}}\n'),
    ("download.py", 'EXPECTED_SHA256 = "{v}"  # sha256 of the release tarball\n'),
]
VERSION = [
    ("__init__.py", '__version__ = "{v}"\n'),
    ("pom.xml", "<dependency>\n  <artifactId>{svc}</artifactId>\n  <version>{v}</version>\n</dependency>\n"),
    ("AssemblyInfo.cs", '[assembly: AssemblyVersion("{v}")]\n'),
    ("package.json", '{{"name": "{svc}", "version": "{v}"}}\n'),
    ("requirements.txt", "{svc}=={v}\n"),
]
PRIVATE_IP = [
    ("settings.py", 'DB_HOST = "{v}"\n'),
    ("upstream.conf", "upstream {svc} {{\n    server {v}:{port};\n}}\n"),
    ("hosts", "{v}\t{svc}.local\n"),
    ("docker-compose.yml", "networks:\n  default:\n    ipam:\n      config:\n        - gateway: {v}\n"),
]
DNS_SERVER = [
    ("resolv.conf", "nameserver {v}\n"),
    ("dns.py", 'RESOLVERS = ["{v}"]\n'),
    ("netplan.yaml", "nameservers:\n  addresses: [{v}]\n"),
]
DATE = [
    ("CHANGELOG.md", "## [1.4.0] - {v}\n\n- Fixed the {svc} exporter.\n"),
    ("release.py", 'RELEASE_DATE = "{v}"\n'),
    ("data.csv", "id,created\n17,{v}\n"),
]
RETINA = [
    ("style.css", '.logo {{ background-image: url("img/{v}"); }}\n'),
    ("index.html", '<img src="assets/{v}" alt="{svc}">\n'),
]
DECORATOR = [
    ("app.py", '{v}("/{svc}")\ndef view():\n    return "ok"\n'),
    ("Main.java", "{v}\npublic String toString() {{ return name; }}\n"),
    ("index.ts", 'import x from "{v}";\n'),
]
PASSWORD_PLACEHOLDER = [
    ("settings.py", "PASSWORD = {v}\n"),
    ("config.yaml", "db:\n  password: {v}\n"),
    ("config.json", '{{"password": {v}}}\n'),
    (".env", "DB_PASSWORD={v}\n"),
    ("form.py", "password = forms.CharField(widget=forms.PasswordInput)\nlabel = {v}\n"),
]


HEX_ID = [
    ("schemas.py", 'CACHED = {{\n    "AWS::EC2::{svc}": "{v}",\n}}\n'),
    ("models.js", "const doc = {{ _id: '{v}', name: '{svc}' }};\n"),
    ("trace.go", 'span := Span{{TraceID: "{v}"}}\n'),
]
OID = [
    ("oids.py", 'KEY_USAGE = ObjectIdentifier("{v}")\n'),
    ("x509.py", '{svc}_oid = "{v}"  # OID\n'),
]


def hex_id(rng: random.Random) -> str:
    """A hex id: a 16-hex schema or trace id, or a 24-hex MongoDB ObjectId."""
    return rand(rng, HEX, rng.choice([16, 24]))


def oid(rng: random.Random) -> str:
    """A four-arc ASN.1 object identifier that is also a valid public IPv4 shape."""
    return f"{rng.choice([1, 2])}.{rng.randint(2, 5)}.{rng.randint(10, 200)}.{rng.randint(10, 99)}"


def uuid_value(rng: random.Random) -> str:
    """A random UUID."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def dotted_version(rng: random.Random) -> str:
    """A four-part version number, short (`1.2.3.4`) or not (`4.2.10.1`)."""
    parts = [rng.randint(0, 9) for _ in range(4)] if rng.random() < 0.5 else [rng.randint(1, 20) for _ in range(4)]
    return ".".join(map(str, parts))


def private_ip(rng: random.Random) -> str:
    """An RFC 1918 or loopback address."""
    return rng.choice([f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "127.0.0.1"])


def date(rng: random.Random) -> str:
    """A date in one of the shapes code uses."""
    y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}", f"{y}/{m:02d}/{d:02d}", f"{m:02d}/{d:02d}/{y}"])


def retina(rng: random.Random) -> str:
    """A retina asset file name."""
    return f"{rng.choice(WORDS)}@{rng.choice([2, 3])}x.{rng.choice(['png', 'jpg', 'webp'])}"


def decorator(rng: random.Random) -> str:
    """A decorator, annotation or scoped package (picked to suit the template in `decorator_case`)."""
    return rng.choice(["@app.route", "@router.get", "@blueprint.route"])


def decorator_case(rng: random.Random) -> Case:
    """A decorator, an annotation or a scoped npm package."""
    path, template = rng.choice(DECORATOR)
    if path == "Main.java":
        value = rng.choice(["@Override", "@Deprecated", "@SuppressWarnings(\"unchecked\")"])
    elif path == "index.ts":
        value = rng.choice(["@babel/core", "@angular/core", "@types/node", "@vue/compiler-sfc"])
    else:
        value = decorator(rng)
    return plant(path, template, "decorator", value, fill(rng))


def password_placeholder(rng: random.Random) -> Case:
    """A password-like key whose value is no password: empty, a reference, a template, a label."""
    path, template = rng.choice(PASSWORD_PLACEHOLDER)
    quoted = {"settings.py": True, "config.json": True, "form.py": True}.get(path, False)
    literals = ['""', '"changeme"', '"********"', '"<your-password>"', '"Password"', '"{{ db_password }}"']
    bare = ["${DB_PASSWORD}", "changeme", "'%(db_password)s'", "<PASSWORD>", "xxxxxxxx", "ENC(AbC123xyz)"]
    code = ['os.environ["DB_PASSWORD"]', "getpass.getpass()", "config.get('db', 'password')", 'env("DB_PASSWORD")']
    if path == "form.py":
        value = rng.choice(['_("Password")', '"Enter your password"', '"Mot de passe"'])
    elif path == "settings.py":
        value = rng.choice(code + literals)
    else:
        value = rng.choice(literals if quoted else bare)
    return plant(path, template, "password_placeholder", value, {})


LOOKALIKE: dict[str, Callable[[random.Random], Case]] = {
    "uuid": templated(UUID, uuid_value, "uuid"),
    "git_hash": templated(GIT_HASH, lambda rng: rand(rng, HEX, 40), "git_hash"),
    "sha256": templated(SHA256, lambda rng: rand(rng, HEX, 64), "sha256"),
    "version": templated(VERSION, dotted_version, "version"),
    "private_ip": templated(PRIVATE_IP, private_ip, "private_ip"),
    "dns_server": templated(DNS_SERVER, lambda rng: rng.choice(DNS), "dns_server"),
    "date": templated(DATE, date, "date"),
    "retina": templated(RETINA, retina, "retina"),
    "decorator": decorator_case,
    "password_placeholder": password_placeholder,
    "hex_id": templated(HEX_ID, hex_id, "hex_id"),
    "oid": templated(OID, oid, "oid"),
}


def corpus(n: int = 200, seed: int = 2024) -> list[Case]:
    """`n` cases of every planted kind and every look-alike kind, in a fixed order."""
    rng = random.Random(seed)
    makers = {**PLANTED, **LOOKALIKE}
    return [makers[kind](rng) for kind in makers for _ in range(n)]
