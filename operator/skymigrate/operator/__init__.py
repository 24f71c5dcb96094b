"""The kopf operator, the launchers and the standalone runner: planning, launching and watching Migrations."""
