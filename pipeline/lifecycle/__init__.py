"""How a job ends: without the interpreter's teardown (`quick_exit`), and with none of the Ray
processes it started left behind (`leftovers`). docs/INTERFACES.md, "Stopping clean"."""
