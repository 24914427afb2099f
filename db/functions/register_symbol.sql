-- Add or update an instrument in the registry. Tasks follow on the next sync.
CREATE OR REPLACE FUNCTION tickagg.register_symbol(
    p_canonical_symbol text,
    p_calendar_code text,
    p_asset_class text DEFAULT NULL,
    p_source_kind text DEFAULT 'bars',
    p_is_mandatory boolean DEFAULT false,
    p_price_kind text DEFAULT 'last',
    p_active boolean DEFAULT true,
    p_test_active boolean DEFAULT false
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_created boolean;
BEGIN
    IF p_canonical_symbol IS NULL OR p_canonical_symbol !~ '^[A-Za-z0-9._:/-]{1,64}$' THEN
        RAISE EXCEPTION 'invalid symbol %', p_canonical_symbol
            USING ERRCODE = 'TK004', HINT = 'Use 1-64 letters, digits or . _ : / -';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tickagg.market_calendars AS c WHERE c.calendar_code = p_calendar_code) THEN
        RAISE EXCEPTION 'unknown calendar %', p_calendar_code
            USING ERRCODE = 'TK003',
                  HINT = format('Known calendars: %s.', (
                      SELECT string_agg(c.calendar_code, ', ' ORDER BY c.calendar_code)
                      FROM tickagg.market_calendars AS c
                  ));
    END IF;
    IF p_source_kind NOT IN ('bars', 'ticks') OR p_price_kind NOT IN ('last', 'mid') THEN
        RAISE EXCEPTION 'invalid source % or price %', p_source_kind, p_price_kind
            USING ERRCODE = 'TK004', HINT = 'source is bars or ticks; price is last or mid.';
    END IF;

    INSERT INTO tickagg.core_asset_registry_all AS r (
        canonical_symbol, asset_class, calendar_code, source_kind, is_mandatory, price_kind, active, test_active
    )
    VALUES (
        p_canonical_symbol, p_asset_class, p_calendar_code, p_source_kind, p_is_mandatory, p_price_kind,
        p_active, p_test_active
    )
    ON CONFLICT (canonical_symbol) DO UPDATE SET
        asset_class = coalesce(excluded.asset_class, r.asset_class),
        calendar_code = excluded.calendar_code,
        source_kind = excluded.source_kind,
        is_mandatory = excluded.is_mandatory,
        price_kind = excluded.price_kind,
        active = excluded.active,
        test_active = excluded.test_active,
        updated_at = now()
    RETURNING (xmax = 0) INTO v_created;

    RETURN jsonb_build_object('canonical_symbol', p_canonical_symbol, 'created', v_created);
END
$$;

COMMENT ON FUNCTION tickagg.register_symbol(text, text, text, text, boolean, text, boolean, boolean) IS
'Insert or update an instrument of core_asset_registry_all; run sync afterwards to create its tasks.';
