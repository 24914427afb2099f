-- The registry as the runner role may read it.
CREATE OR REPLACE VIEW tickagg.asset_registry AS
SELECT
    r.canonical_symbol,
    r.asset_class,
    r.calendar_code,
    r.active,
    r.test_active,
    r.is_mandatory,
    r.source_kind,
    r.price_kind,
    r.timeframes
FROM tickagg.core_asset_registry_all AS r;
