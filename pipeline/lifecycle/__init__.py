"""How a job ends: without the interpreter's teardown (`quick_exit`), with none of the Ray
processes it started left behind (`leftovers`), and unwound when a scheduler stops it with
SIGTERM (`terminate`). docs/INTERFACES.md, "Stopping clean"."""
