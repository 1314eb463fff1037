"""Dataset importers, one module each; the name -> importer table is in ``registry``."""
