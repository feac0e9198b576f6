#!/usr/bin/env bash
# The meerkat command line, end to end: run (one command and stdin with find/getMore),
# insert/find/update/delete/count, import (array, JSON lines, stdin) and export round trips,
# exit statuses (0 ok, 1 a failed command, 2 usage) and error messages.
# usage: bash tests/cli_basic.sh /path/to/meerkat   (MK_TEST_TMP: scratch directory)
set -u

MK=${1:?usage: cli_basic.sh /path/to/meerkat}
BASE=${MK_TEST_TMP:-/tmp}
mkdir -p "$BASE" || exit 1
T=$(mktemp -d "$BASE/cli_basic.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
D=$T/db

failures=0
checks=0
fail() {
    echo "FAIL: $*" >&2
    echo "  command: ${last_cmd:-}" >&2
    echo "  status:  ${status:-}" >&2
    echo "  stdout:  $(head -c 600 "$T/out" 2>/dev/null)" >&2
    echo "  stderr:  $(head -c 600 "$T/err" 2>/dev/null)" >&2
    failures=$((failures + 1))
}
# mk ARGS...: runs meerkat; stdout in $T/out, stderr in $T/err, spaces removed copy in $T/outc.
mk() {
    last_cmd="meerkat $*"
    "$MK" "$@" >"$T/out" 2>"$T/err"
    status=$?
    tr -d ' ' <"$T/out" >"$T/outc"
}
# mk_in FILE ARGS...: same with stdin from FILE.
mk_in() {
    local input=$1
    shift
    last_cmd="meerkat $* < $input"
    "$MK" "$@" <"$input" >"$T/out" 2>"$T/err"
    status=$?
    tr -d ' ' <"$T/out" >"$T/outc"
}
expect_status() {
    checks=$((checks + 1))
    [ "$status" -eq "$1" ] || fail "$2: exit status $status, expected $1"
}
# Patterns are matched against stdout with every space removed.
expect_out() {
    checks=$((checks + 1))
    grep -Eq -- "$1" "$T/outc" || fail "$2: stdout does not match /$1/"
}
expect_no_out() {
    checks=$((checks + 1))
    if grep -Eq -- "$1" "$T/outc"; then fail "$2: stdout unexpectedly matches /$1/"; fi
}
expect_err() {
    checks=$((checks + 1))
    grep -Eiq -- "$1" "$T/err" || fail "$2: stderr does not match /$1/"
}
expect_lines() {
    checks=$((checks + 1))
    local n
    n=$(wc -l <"$T/out")
    [ "$n" -eq "$1" ] || fail "$2: $n lines on stdout, expected $1"
}
expect_eq() {
    checks=$((checks + 1))
    [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}
OK='"ok":1(\.0)?[,}]'
NOTOK='"ok":0(\.0)?[,}]'

# ---- version, help, usage errors ----
mk --version
expect_status 0 "--version"
expect_out '^meerkat[0-9]+\.[0-9]+\.[0-9]+' "--version prints the version"
mk help
expect_status 0 "help"
for c in run insert find update delete count import export; do
    grep -q "^  $c " "$T/out" || fail "help does not list '$c'"
done
mk help run
expect_status 0 "help run"
expect_out 'getMore' "help run explains the stdin mode"
mk help import
expect_out '1000' "help import documents the batch size"
mk find --help
expect_status 0 "find --help"
expect_out '--sort' "find --help lists its options"
mk help nosuchcommand
expect_status 2 "help of an unknown command"
mk
expect_status 2 "no arguments"
expect_err 'usage' "no arguments prints the usage on stderr"
mk frobnicate "$D"
expect_status 2 "unknown subcommand"
expect_err "unknown command 'frobnicate'" "unknown subcommand is named"
expect_err 'usage' "unknown subcommand prints the usage"
mk run "$D"
expect_status 2 "run without COMMAND"
mk run --bogus "$D" '{ ping: 1 }'
expect_status 2 "unknown option"
expect_err "unknown option '--bogus'" "unknown option is named"
mk run "$D" '{ ping: 1 }' --db
expect_status 2 "--db without a value"
expect_err "needs a value" "missing option value message"

# ---- run: one command ----
mk run "$D" '{ ping: 1 }'
expect_status 0 "run ping"
expect_out "^\\{$OK" "ping replies { ok: 1 }"
expect_lines 1 "a reply is one line"
mk run "$D" "{ insert: 'people', documents: [ { _id: 1, name: 'ann', age: 30 }, { _id: 2, name: 'bob', age: 17 }, { _id: 3, name: 'cyd', age: 45 }, { _id: 4, name: 'dee', age: 30 }, { _id: 5, name: 'eve', age: 22 } ] }"
expect_status 0 "run insert"
expect_out '"n":5' "run insert reports n: 5"
expect_out "$OK" "run insert ok: 1"
mk run "$D" "{ insert: 'people', documents: [ { _id: 1, name: 'dup' } ] }"
expect_status 1 "a duplicate _id insert fails"
expect_out '"writeErrors"' "duplicate _id reply has writeErrors"
expect_out '"code":11000' "duplicate _id reply has code 11000"
mk run "$D" '{ noSuchCommand: 1 }'
expect_status 1 "unknown database command"
expect_out "$NOTOK" "unknown database command replies ok: 0"
expect_out '"code":59' "unknown database command has code 59"
expect_out 'CommandNotFound' "unknown database command has codeName CommandNotFound"
mk run "$D" '{ ping: 1'
expect_status 2 "unparseable COMMAND"
expect_err 'line 1, column [0-9]+' "parse error names line and column"
mk run "$D" "{ count: 'people', query: { age: 30 } }"
expect_status 0 "run count"
expect_out '"n":2' "run count finds two people aged 30"
mk run --db other "$D" "{ count: 'people' }"
expect_out '"n":0' "--db selects another database"
mk run --no-sync "$D" "{ find: 'people', filter: { _id: 3 } }"
expect_status 0 "run find with --no-sync"
expect_out '"name":"cyd"' "run find returns the document"
expect_out '"firstBatch"' "run find returns a cursor reply"

# ---- run: stdin, one process; find then getMore with the printed cursor id ----
trap '' PIPE # should the coprocess die, writes to it fail instead of killing this script
coproc MKP { "$MK" run "$D" - 2>"$T/coproc.err"; }
# Bash forgets the coprocess's variables when it exits: keep copies.
mkp_pid=$MKP_PID
mkp_in=${MKP[1]}
mkp_out=${MKP[0]}
echo "{ find: 'people', filter: {}, sort: { _id: 1 }, batchSize: 2 }" >&"$mkp_in"
IFS= read -r -t 20 first <&"$mkp_out" || first=""
first=${first// /}
checks=$((checks + 1))
case $first in *'"firstBatch":[{"_id":1,'*'{"_id":2,'*) ;; *) fail "stdin find: unexpected first batch: $first" ;; esac
cursor_id=$(printf '%s\n' "$first" | grep -oE '"id":[0-9]+' | grep -oE '[0-9]+$')
checks=$((checks + 1))
if [ -z "$cursor_id" ] || [ "$cursor_id" = 0 ]; then fail "stdin find: no open cursor id in: $first"; fi
echo "{ getMore: NumberLong(${cursor_id:-0}), collection: 'people' }" >&"$mkp_in"
IFS= read -r -t 20 more <&"$mkp_out" || more=""
more=${more// /}
checks=$((checks + 1))
case $more in *'"nextBatch":[{"_id":3,'*'{"_id":4,'*'{"_id":5,'*) ;; *) fail "stdin getMore: unexpected batch: $more" ;; esac
checks=$((checks + 1))
case $more in *'"id":0'*) ;; *) fail "stdin getMore: cursor not exhausted: $more" ;; esac
echo "{ getMore: NumberLong(${cursor_id:-0}), collection: 'people' }" >&"$mkp_in"
IFS= read -r -t 20 gone <&"$mkp_out" || gone=""
checks=$((checks + 1))
case ${gone// /} in *'"code":43'*) ;; *) fail "getMore on an exhausted cursor: $gone" ;; esac
eval "exec $mkp_in>&-"
wait "$mkp_pid"
status=$?
trap - PIPE
last_cmd="meerkat run DIR - (coprocess)"
expect_status 1 "stdin mode exits 1 when a reply was not ok"

cat >"$T/cmds" <<'EOF'
# a comment line, then a blank line

{ ping: 1 }
{ count: 'people' }
{ this is not json
{ insert: 'people', documents: [ { _id: 9 } ], $db: 'otherdb' }
{ count: 'people', $db: 'otherdb' }
EOF
mk_in "$T/cmds" run "$D" -
expect_status 1 "stdin mode with a bad line"
expect_lines 5 "stdin mode: one reply per command, comments and blank lines skipped"
checks=$((checks + 1))
sed -n 3p "$T/outc" | grep -Eq "\"code\":9[,}].*FailedToParse|FailedToParse.*\"code\":9[,}]" ||
    fail "stdin mode: a bad line gets a FailedToParse reply"
sed -n 3p "$T/outc" | grep -q 'line5' || fail "stdin mode: the FailedToParse reply names input line 5"
checks=$((checks + 1))
sed -n 2p "$T/outc" | grep -q '"n":5' || fail "stdin mode: count in the default database"
checks=$((checks + 1))
sed -n 5p "$T/outc" | grep -q '"n":1' || fail "stdin mode: \$db chooses the database"
printf '{ ping: 1 }\n{ count: "people" }\n' >"$T/okcmds"
mk_in "$T/okcmds" run "$D" -
expect_status 0 "stdin mode, all replies ok"
expect_lines 2 "stdin mode, two replies"

# ---- friendly subcommands ----
mk insert "$D" users "{ _id: 'a', name: 'Ann', age: 31, tags: ['x'] }" \
    "[ { _id: 'b', name: 'Bob', age: 17 }, { _id: 'c', name: 'Cyd', age: 52 } ]"
expect_status 0 "insert documents and an array"
expect_out '"acknowledged":true' "insert prints acknowledged"
expect_out '"insertedIds":\{"0":"a","1":"b","2":"c"\}' "insert lists insertedIds"
mk insert "$D" users "{ name: 'Dan', age: 40 }"
expect_status 0 "insert without _id"
expect_out '"insertedId":\{"\$oid":"[0-9a-f]{24}"\}' "a generated ObjectId is reported"
mk insert "$D" users "{ _id: 'a', name: 'again' }"
expect_status 1 "insert of a duplicate _id"
expect_err 'E11000|duplicate key' "duplicate key message"
mk insert "$D" users "{ _id: 'z' }" "{ bad"
expect_status 2 "insert with one bad document"
expect_err 'line 1, column' "insert parse error position"
mk count "$D" users "{ _id: 'z' }"
expect_out '^0$' "nothing is inserted when one argument does not parse"
mk insert "$D" users
expect_status 2 "insert without documents"

mk count "$D" users
expect_status 0 "count"
expect_out '^4$' "count prints a bare number"
mk count "$D" users "{ age: { \$gte: 18 } }"
expect_out '^3$' "count with a filter"
mk count "$D" users "{ age: "
expect_status 2 "count with a bad filter"

mk find "$D" users "{ age: { \$gte: 18 } }" --sort -age --projection 'name -_id'
expect_status 0 "find with sort and projection"
expect_eq "$(tr '\n' ' ' <"$T/outc")" '{"name":"Cyd"} {"name":"Dan"} {"name":"Ann"} ' "find order and projection"
mk find "$D" users '{}' --sort '{ name: 1 }' --skip 1 --limit 2 --projection '{ _id: 1 }'
expect_eq "$(tr '\n' ' ' <"$T/outc")" '{"_id":"b"} {"_id":"c"} ' "find with skip and limit"
mk find "$D" users --limit -1
expect_status 2 "a negative --limit is a usage error"
mk find "$D/does-not-exist" users
expect_status 1 "find on a missing directory"
expect_err "cannot open database directory" "missing directory message"
checks=$((checks + 1))
[ -e "$D/does-not-exist" ] && fail "find created a directory"
touch "$T/plainfile"
mk run "$T/plainfile" '{ ping: 1 }'
expect_status 1 "a DIR that is a file"
expect_err "not a directory" "a DIR that is a file is reported"
mk find "$D" users "{ \$bogus: 1 }"
expect_status 1 "find with an unknown operator"
expect_err 'unknown top level operator|\$bogus' "the engine's error is printed"

mk update "$D" users "{ _id: 'b' }" "{ \$set: { age: 18 }, \$push: { tags: 'new' } }"
expect_status 0 "update one"
expect_out '"matchedCount":1' "update matchedCount"
expect_out '"modifiedCount":1' "update modifiedCount"
expect_out '"upsertedCount":0' "update upsertedCount"
mk update "$D" users "{ age: { \$gte: 18 } }" "{ \$inc: { age: 1 } }" --multi
expect_out '"matchedCount":4' "update --multi matches all adults"
expect_out '"modifiedCount":4' "update --multi modifies them"
mk update "$D" users "{ _id: 'e' }" "{ \$set: { name: 'Eve' } }" --upsert
expect_out '"upsertedCount":1' "update --upsert inserts"
expect_out '"insertedId":"e"' "update --upsert reports the new _id"
mk update "$D" users "{ _id: 'b' }" "{ \$nope: { a: 1 } }"
expect_status 1 "update with an unknown operator"
mk find "$D" users "{ _id: 'b' }"
expect_out '"age":19' "the update is stored"
expect_out '"tags":\["new"\]' "the push is stored"
mk delete "$D" users "{ age: { \$gte: 18 } }" --one
expect_out '"deletedCount":1' "delete --one deletes one"
mk delete "$D" users "{ age: { \$gte: 18 } }"
expect_out '"deletedCount":3' "delete deletes the rest"
mk count "$D" users
expect_out '^1$' "one user left"
mk delete "$D" users
expect_status 2 "delete requires a filter"

# ---- import / export ----
{
    printf '[\n'
    for i in $(seq 1 250); do
        sep=,
        [ "$i" = 250 ] && sep=
        printf "  { _id: %d, name: 'user%d', even: %s, when: ISODate('2024-01-02T03:04:05Z') }%s\n" \
            "$i" "$i" "$([ $((i % 2)) = 0 ] && echo true || echo false)" "$sep"
    done
    printf ']\n'
} >"$T/array.json"
mk import "$D" imp "$T/array.json"
expect_status 0 "import a JSON array"
expect_out '^imported250documents$' "import prints the count"
mk count "$D" imp "{ even: true }"
expect_out '^125$' "imported documents are queryable"

mk export "$D" imp
expect_status 0 "export"
expect_lines 250 "export writes one document per line (across getMore batches)"
cp "$T/out" "$T/export.jsonl"
mk find "$D" imp '{}' --batch-size 7
expect_lines 250 "find follows getMore with small batches"

mk import "$D" imp2 "$T/export.jsonl"
expect_status 0 "import JSON lines (an export)"
expect_out '^imported250documents$' "import of JSON lines counts"
mk export "$D" imp2
checks=$((checks + 1))
cmp -s "$T/out" "$T/export.jsonl" || fail "export -> import -> export is not identical"

mk export "$D" imp "{ _id: { \$lte: 3 } }" --canonical
expect_lines 3 "export with a filter"
expect_out '"_id":\{"\$numberInt":"1"\}' "export --canonical keeps number types"
cp "$T/out" "$T/canonical.jsonl"
mk_in "$T/canonical.jsonl" import "$D" imp3 -
expect_status 0 "import canonical Extended JSON from stdin"
expect_out '^imported3documents$' "stdin import count"
mk find "$D" imp3 "{ when: { \$type: 'date' }, _id: { \$type: 'int' } }"
expect_lines 3 "canonical import keeps dates and int32"

printf '{ "_id": 1, "a": 1 }\n{ "_id": 2,\n  "a": 2 }\n' >"$T/multi.json"
mk import "$D" imp4 "$T/multi.json"
expect_out '^imported2documents$' "documents spread over several lines"

printf '{ _id: 1 }\n{ _id: 2 }\n{ _id: 3, oops }\n{ _id: 4 }\n' >"$T/bad.jsonl"
mk import "$D" imp5 "$T/bad.jsonl"
expect_status 1 "import stops at a bad line"
expect_err 'line 3, column [0-9]+' "import error names line and column"
mk count "$D" imp5
expect_out '^2$' "documents before the bad line are imported"
printf '[ { _id: 1 }, { _id: 1 } ]' >"$T/dup.json"
mk import "$D" imp6 "$T/dup.json"
expect_status 1 "import with a duplicate _id"
expect_err 'line 1.*(E11000|duplicate)' "import duplicate names the line"
printf '[ { a: 1 }, 5 ]' >"$T/notdoc.json"
mk import "$D" imp7 "$T/notdoc.json"
expect_status 1 "import of an array holding a non-document"
expect_err 'expected a document' "import non-document message"
mk import "$D" imp8 "$T/nonexistent.json"
expect_status 1 "import of a missing file"
expect_err 'cannot open' "missing import file message"
mk import "$D" imp "$T/array.json" --drop
expect_out '^imported250documents$' "import --drop replaces the collection"
mk count "$D" imp
expect_out '^250$' "import --drop leaves only the new documents"

echo "cli_basic: $checks checks, $failures failed"
[ "$failures" -eq 0 ]
