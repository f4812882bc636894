"""The ``market-ab`` command: train, evaluate, build the drift reference, check and serve the manifests locally,
send requests, roll out, retrain, receive alerts, run the demo, render the docs' generated sections.

The command is a tool: a serving install (``pip install seldon-market-ab``) has the package but not the libraries
its subcommands use, and is told which extra brings them.
"""

# What the tools import beyond the serving install, by the extra that brings each (setup.cfg).
TOOL_LIBRARIES = {"arch": "tools", "backtesting": "tools", "tqdm": "tools", "matplotlib": "tools", "yaml": "tools",
                  "aiohttp": "tools", "jinja2": "tools", "alibi_detect": "drift", "sklearn": "drift",
                  "locust": "loadtest", "kubernetes": "kubernetes"}


def main(argv=None) -> int:
    try:
        from .commands import main as run
        return run(argv)
    except ModuleNotFoundError as missing:
        extra = TOOL_LIBRARIES.get((missing.name or "").split(".")[0])
        if extra is None:
            raise
        raise SystemExit(f"market-ab: this needs {missing.name}, which the serving install leaves out: "
                         f"pip install 'seldon-market-ab[{extra}]'") from missing
