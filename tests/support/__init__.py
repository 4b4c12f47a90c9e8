"""Independent re-computations the tests compare kho against (never imported by kho)."""
