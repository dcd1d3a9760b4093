"""Storage: engines and units of work, the tables, the migrations. Imports the config only."""
