"""Start the web app: ``python run.py [--host 127.0.0.1] [--port 5000] [--https] [--public-url URL]``.

The same as the ``ser-webapp`` command (webapp/cli.py); see ``python run.py --help``.
"""
from webapp.cli import main

if __name__ == "__main__":
    main()
