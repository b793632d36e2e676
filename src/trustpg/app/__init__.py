"""The command line and run orchestration: ``trustpg train|eval|plot|compare|experiment``."""
