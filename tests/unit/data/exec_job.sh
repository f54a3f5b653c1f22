#!/bin/sh
# A program for test_handler's exec cases; the first argument picks what
# it does, as a handler's command would.
case "$1" in
ok) exit 0 ;;
exit) # exit CODE MESSAGE: MESSAGE on stderr, then exit CODE
  printf '%s\n' "$3" >&2
  exit "$2" ;;
copy) # copy FILE: stdin to FILE, the job's variables to FILE.env
  cat >"$2" || exit 1
  printf '%s\n' "$KJB_JOB_ID" "$KJB_JOB_KIND" "$KJB_JOB_ATTEMPT" >"$2.env"
  exit 0 ;;
ignore) exit 0 ;; # leaves stdin unread
sleep) exec sleep 30 ;;
kill) kill -KILL $$ ;;
*) echo "unknown mode $1" >&2; exit 2 ;;
esac
