"""The demo city: a province's real 2025 wards with generated cells, roads, places and
water, seeded into its tenant by ``sencity demo`` (see docs/DEMO.md)."""
