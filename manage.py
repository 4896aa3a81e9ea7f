#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        from django.core.management import execute_from_command_line
    except ModuleNotFoundError:
        # The system python has no Django: say which one has, in one line.
        sys.exit("Django is not installed for this python: run `make install`, then use "
                 ".venv/bin/python manage.py ...")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
