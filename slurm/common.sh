# Shared by slurm/*.sbatch, sourced once they are in the repository root: reading the sddit
# config, and the dataset the run will read (DATA, the config's data.path, --data.* arguments),
# checked before srun starts: a missing file is an error in a real run, a warning in a dry run.
# (sbatch runs a copy of the script from its spool directory, so this file is found through the
# repository, not next to the script.)
# shellcheck shell=bash

# ini_value FILE SECTION KEY: the value of KEY in [SECTION] of an INI file ("" when absent).
# Comment lines (# or ;) and blanks around the key and value are ignored, as sddit does.
ini_value() {
  [ -f "$1" ] || return 0
  awk -v sec="$2" -v key="$3" '
    /^[ \t]*[#;]/ { next }
    /^[ \t]*\[/ { s = $0; gsub(/[][ \t]/, "", s); in_sec = (s == sec); next }
    in_sec && index($0, "=") {
      k = $0; sub(/[ \t]*=.*/, "", k); sub(/^[ \t]+/, "", k)
      if (k == key) { v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]+$/, "", v); val = v }
    }
    END { print val }' "$1"
}

# resolve_data CONFIG ARGS...: sets
#   data_source  the last --data.source=X among ARGS, else the config's data.source (synthetic
#                when the config has none, as in sddit);
#   data_path    the file the run reads: the last --data.path=X among ARGS, else $DATA, else the
#                config's data.path;
#   data_from    where data_path came from, for messages;
#   data_args    the arguments the script passes: --data.path=$DATA (DATA defaults to the
#                config's data.path; nothing when both are empty);
#   run_backend  cuda (the scripts pass --train.backend=cuda), or the last --train.backend=X
#                among ARGS.
# shellcheck disable=SC2034  # data_args is used by the scripts that source this file
resolve_data() {
  local config=$1 a cfg_path
  shift
  data_source=$(ini_value "$config" data source)
  cfg_path=$(ini_value "$config" data path)
  data_path=${DATA:-$cfg_path}
  if [ -n "${DATA:-}" ]; then data_from="DATA"; else data_from="data.path of $config"; fi
  data_args=()
  run_backend=cuda
  [ -z "$data_path" ] || data_args=(--data.path="$data_path")
  for a in "$@"; do
    case "$a" in
      --data.source=*) data_source=${a#--data.source=} ;;
      --data.path=*) data_path=${a#--data.path=}; data_from="--data.path" ;;
      --train.backend=*) run_backend=${a#--train.backend=} ;;
    esac
  done
  : "${data_source:=synthetic}"
}

# describe_data: one line for the job log.
describe_data() {
  if [ "$data_source" = hdf5 ]; then echo "dataset $data_path ($data_from)"
  else echo "data: the $data_source source (no dataset file)"; fi
}

# check_data SCRIPT: an hdf5 run whose file is missing stops here (a warning with DRY_RUN=1),
# saying how to make the file or point at another one.
check_data() {
  [ "$data_source" = hdf5 ] || return 0
  local where=$data_path what
  case "$where" in /*) ;; *) where="$PWD/$where" ;; esac
  if [ -z "$data_path" ]; then
    what="data.source = hdf5 but no data.path: set DATA=/path/to/latents.h5"
  elif [ ! -f "$data_path" ]; then
    what="no dataset at $where ($data_from): make it with data-prep/imagenet_latents.py"
    what+=" /path/to/imagenet/train --out $data_path --devices all --flip (data-prep/README.md),"
    what+=" or set DATA=/path/to/latents.h5 to an existing file; a run without data:"
    what+=" add --data.source=synthetic"
  else
    return 0
  fi
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "$1: warning: $what (a real run stops here)" >&2
  else
    echo "$1: error: $what" >&2
    exit 1
  fi
}
