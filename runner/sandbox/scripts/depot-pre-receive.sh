#!/bin/sh
# The depot's check of a push into one task's repo: only refs/heads/result and
# refs/heads/out, each created once, never moved or deleted.
zero=0000000000000000000000000000000000000000000000000000000000000000
while read -r old new ref; do
    case "$ref" in
        refs/heads/result|refs/heads/out) ;;
        *) echo "depot: this task may write only refs/heads/result and refs/heads/out, not $ref" >&2; exit 1 ;;
    esac
    case "$zero" in
        "$old"*) ;;
        *) echo "depot: $ref is written once" >&2; exit 1 ;;
    esac
done
exit 0
