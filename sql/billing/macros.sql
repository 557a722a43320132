-- macros: integer helpers shared by the billing models (no model; loaded first).
-- Money inside the models is integer: `_micro` = 1e-6 units (catalog prices), `_e4` = 1e-4 units
-- (stored charges), cents = 1e-2 units. Only integer arithmetic, so nothing is ever a float.
create or replace macro ceil_div(a, b) as (a + b - 1) // b;
-- n / d rounded by method: 'up' (ceiling), 'down' (floor), 'half_up' (halves away from zero); n >= 0, d > 0
create or replace macro round_div(n, d, method) as
    case method when 'up' then (n + d - 1) // d when 'down' then n // d else (2 * n + d) // (2 * d) end;
-- the same with the method as rating_keys' rounding_code: 0 up, 1 down, 2 half_up
create or replace macro round_div_code(n, d, code) as
    case code when 0 then (n + d - 1) // d when 1 then n // d else (2 * n + d) // (2 * d) end;
-- signed n / d, halves away from zero (Python's ROUND_HALF_UP), d > 0
create or replace macro round_half_up_div(n, d) as sign(n) * ((2 * abs(n) + d) // (2 * d));
create or replace macro to_micro(x) as (x * 1000000)::hugeint;
create or replace macro to_e4(x) as (x * 10000)::hugeint;
create or replace macro e4_to_money(x) as (x::decimal(18, 0) * 0.0001::decimal(5, 4))::decimal(18, 4);
-- a 1e-4 amount rounded half-up to whole cents, still in 1e-4 units
create or replace macro e4_to_cents_e4(x) as round_half_up_div(x, 100) * 100;
