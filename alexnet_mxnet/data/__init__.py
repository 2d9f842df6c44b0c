"""Photos to RecordIO: the converter (``im2rec``), its worker processes (``encoding``, no MXNet), the sources it reads, and the built-in demo data set."""
