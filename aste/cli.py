"""What a user gets for bad input: one line naming the file and line, or the flag, and a non-zero
exit; the traceback only with --debug (or ASTE_DEBUG=1)."""
from __future__ import annotations

import os
import sys

from models.errors import UserError


def run_cli(main, argv=None) -> int:
    """Call main(argv); a UserError becomes 'error: <message>' on stderr and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get("ASTE_DEBUG", "") not in ("", "0")
    try:
        result = main(argv)
    except UserError as err:
        if debug:
            raise
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
