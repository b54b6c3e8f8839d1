"""python -m server [--host H] [--port P]: same as `edge-triage serve`."""

from .cli import main

if __name__ == "__main__":
    main(["serve", *__import__("sys").argv[1:]])
