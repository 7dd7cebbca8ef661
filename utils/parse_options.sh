#!/usr/bin/env bash
# Kaldi-style option parsing, sourced by a script after it sets its defaults:
#
#   stage=0          # first stage to run
#   corpus=synth     # synth | librispeech | kaldi
#   . utils/parse_options.sh
#
# Every shell variable that already has a value can be overridden with `--name value` (or
# `--name=value`); dashes in the name map to underscores. `--help` prints the script's usage
# (the variable $help_message if set) and each variable with its comment and current value.
# Positional arguments are left in "$@".

_kd_script=${BASH_SOURCE[1]:-$0}

_kd_print_help() {
  [ -n "${help_message:-}" ] && printf '%s\n\n' "$help_message"
  echo "Options (default in brackets):"
  # Lines of the form `name=value  # comment` before the parse_options.sh line are the options.
  # help_message is the usage text, not an option.
  sed -n '1,/parse_options.sh/p' "$_kd_script" | grep -E '^[a-z_][a-z0-9_]*=' | grep -v '^help_message=' |
  while IFS= read -r line; do
    name=${line%%=*}
    comment=""
    case "$line" in *'#'*) comment=${line#*#} ;; esac
    printf '  --%-24s %s [%s]\n' "${name//_/-}" "${comment# }" "${!name}"
  done
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      _kd_print_help
      exit 0 ;;
    --*=*)
      _kd_name=${1%%=*}; _kd_name=${_kd_name#--}; _kd_name=${_kd_name//-/_}
      _kd_value=${1#*=}
      shift ;;
    --*)
      _kd_name=${1#--}; _kd_name=${_kd_name//-/_}
      if [ $# -lt 2 ]; then
        echo "$_kd_script: option --${1#--} needs a value" >&2; exit 1
      fi
      _kd_value=$2
      shift 2 ;;
    *) break ;;
  esac
  if ! [[ $_kd_name =~ ^[a-z_][a-z0-9_]*$ ]] || [ -z "${!_kd_name+set}" ]; then
    echo "$_kd_script: unknown option --${_kd_name//_/-} (see --help)" >&2
    exit 1
  fi
  # Boolean options must stay boolean so `if $flag; then` cannot run an arbitrary command.
  if [ "${!_kd_name}" = true ] || [ "${!_kd_name}" = false ]; then
    if [ "$_kd_value" != true ] && [ "$_kd_value" != false ]; then
      echo "$_kd_script: --${_kd_name//_/-} takes true or false, not '$_kd_value'" >&2
      exit 1
    fi
  fi
  printf -v "$_kd_name" '%s' "$_kd_value"
done
unset _kd_name _kd_value
true
