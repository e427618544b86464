"""``python -m steel_keras`` is the same as the ``steel-keras`` command."""

import sys

from steel_keras.cli import main

sys.exit(main())
