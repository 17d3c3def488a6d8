"""File I/O. The only modules of the package that open files."""
