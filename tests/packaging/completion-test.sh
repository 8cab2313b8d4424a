#!/usr/bin/env bash
# The bash completion for kagzictl (packaging/kagzictl.bash-completion)
# against a built kagzictl: commands, options per command, values.
#
# Usage: tests/packaging/completion-test.sh KAGZICTL_BINARY
set -euo pipefail

export KAGZICTL
KAGZICTL="$(realpath "${1:?usage: completion-test.sh KAGZICTL_BINARY}")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../packaging/kagzictl.bash-completion
source "$here/../../packaging/kagzictl.bash-completion"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# complete WORD...: COMPREPLY for the command line WORD... (last word: current).
complete_words() {
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _kagzictl
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}
expect() { # expect "WORDS" EXPECTED (sorted, space-separated)
  local got
  read -r -a words <<<"$1"
  [[ $1 == *" " ]] && words+=("")
  got="$(complete_words "${words[@]}")"
  [[ $got == "$2" ]] || fail "completing '$1': got '$got', want '$2'"
  echo "ok: '$1' -> $2"
}
expect_has() { # expect_has "WORDS" WORD...
  local got w
  read -r -a words <<<"$1"
  [[ $1 == *" " ]] && words+=("")
  got=" $(complete_words "${words[@]}") "
  shift
  for w in "$@"; do [[ $got == *" $w "* ]] || fail "completing: '$w' not offered: $got"; done
  echo "ok: offered $*"
}

# Every command kagzictl --help lists is offered.
mapfile -t commands < <("$KAGZICTL" --help | awk '/^Subcommands:/ { s = 1; next } /^[^ ]/ { s = 0 } s && /^  [^ ]/ { print $1 }')
((${#commands[@]} >= 8)) || fail "could not read the commands from kagzictl --help"
expect_has "kagzictl " "${commands[@]}"
expect "kagzictl sta" "start status"
expect_has "kagzictl start --w" --wait
expect "kagzictl wor" "workers workflows"
expect_has "kagzictl start --" --input --input-file --id --wait --timeout --json --allow-unknown \
  --batch --id-prefix
expect "kagzictl start hello --batch runs.jsonl --id-prefix " ""
expect "kagzictl --database-url postgresql:///x sh" "show"
expect "kagzictl -c /nonexistent-dir/x --da" "--database-url"
expect "kagzictl list --status CO" "COMPLETED"
expect_has "kagzictl list --status " PENDING RUNNING SLEEPING COMPLETED FAILED
expect "kagzictl start hello --input " ""
expect "kagzictl list --limit " ""
expect "kagzictl signal RUN NAME --data " ""
# A flag is not followed by a value: commands are offered after it.
expect "kagzictl --version st" "start status"
# File names after --input-file and -c.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/input-one.json" "$tmp/input-two.json"
expect "kagzictl start hello --input-file $tmp/input-" "$tmp/input-one.json $tmp/input-two.json"
expect "kagzictl -c $tmp/input-o" "$tmp/input-one.json"
expect "kagzictl start hello --batch $tmp/input-t" "$tmp/input-two.json"
echo "completion-test: PASS"
