#!/usr/bin/env bash
# The examples `make run` runs, end to end: the ODM users example must print what its
# comments promise (validation details, the rewritten duplicate error, the page and total,
# the CastError, the upsert), and a second run on the same directory must give the same.
# usage: bash tests/cli_examples.sh /path/to/meerkat   (the examples sit beside it)
set -u

MK=${1:?usage: cli_examples.sh /path/to/meerkat}
BIN=$(dirname "$MK")
BASE=${MK_TEST_TMP:-/tmp}
mkdir -p "$BASE" || exit 1
T=$(mktemp -d "$BASE/cli_examples.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

failures=0
expect() { # expect <output file> <fixed string>
    if ! grep -qF -- "$2" "$1"; then
        echo "FAIL: output lacks: $2" >&2
        failures=$((failures + 1))
    fi
}

for run in 1 2; do
    if ! "$BIN/users" "$T/app" >"$T/out" 2>"$T/err"; then
        echo "FAIL: users exited with $? (run $run)" >&2
        cat "$T/err" >&2
        exit 1
    fi
    expect "$T/out" 'model User -> collection "users" in database "app"'
    expect "$T/out" '"email" : "ada@example.com"'
    expect "$T/out" 'User validation failed: email: Path `email` is required.'
    expect "$T/out" '- role (ValidatorError, enum): `root` is not a valid enum value for path `role`.'
    expect "$T/out" 'MongoServerError: That email is already registered'
    expect "$T/out" 'update sent by save(): { "$set" : { "profile.bio" : "Wrote the first program.", "preferences.theme" : "dark" } }'
    expect "$T/out" '2 shown of 3'
    expect "$T/out" 'CastError: Cast to date failed for value "yesterday" (type string) at path "createdAt" for model "User"'
    expect "$T/out" '"name" : "Barbara Liskov"'
    if [ "$(grep -c '"id" :' "$T/out")" -ne 6 ]; then
        echo "FAIL: expected 6 documents printed with one id each" >&2
        failures=$((failures + 1))
    fi
    if grep -q '"id" : "[0-9a-f]*", .*"id" :' "$T/out"; then
        echo "FAIL: a document printed with two id keys" >&2
        failures=$((failures + 1))
    fi
done
[ "$failures" -eq 0 ] || exit 1
echo "cli_examples: ok"
