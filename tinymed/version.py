"""tinymed's version, in a module of its own so that every module can name it without importing
the package (which imports them)."""

VERSION = "0.1.0"
