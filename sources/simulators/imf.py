"""Simulator of the IMF DataMapper API (`api-formats.md` section 2).

`GET /external/datamapper/api/v1/{INDICATOR}[/{ISO3}...]?periods=2024,2025` answers
`{"values": {IND: {ISO3: {"2024": 2.8, ...}}}, "api": {...}}` with string years; years not
asked for, or not simulated, are absent. Without countries every country is answered; without
`periods` every year. An unknown indicator, or countries none of which is known, get the API's
answer without `values`. `/indicators` and `/countries` list what is simulated.

Values are deterministic per country, indicator and year (`seeded`) around each country's
typical level, with the 2020 slump and 2021 rebound; for some countries the last projection
year is absent, as in the real data.
"""

from __future__ import annotations

from sources.simulators import SimRequest, SimResponse, seeded

PREFIX = "/external/datamapper/api/v1"
FIRST_YEAR = 2000
LAST_YEAR = 2031  # the DataMapper projects about five years ahead
API = {"version": "1", "output-method": "json"}

# ISO3 -> (name, typical real GDP growth %, typical inflation %).
COUNTRIES: dict[str, tuple[str, float, float]] = {
    "USA": ("United States", 2.2, 2.5),
    "DEU": ("Germany", 1.0, 2.0),
    "GBR": ("United Kingdom", 1.4, 2.6),
    "FRA": ("France", 1.1, 1.9),
    "ESP": ("Spain", 1.8, 2.2),
    "ITA": ("Italy", 0.6, 1.8),
    "NLD": ("Netherlands", 1.6, 2.1),
    "CAN": ("Canada", 1.8, 2.2),
    "AUS": ("Australia", 2.5, 2.6),
    "JPN": ("Japan", 0.6, 0.8),
    "IND": ("India", 6.5, 5.0),
    "BRA": ("Brazil", 2.0, 5.5),
    "MEX": ("Mexico", 1.9, 4.2),
    "CHN": ("China", 5.5, 1.8),
    "AUT": ("Austria", 1.3, 2.2),
    "BEL": ("Belgium", 1.4, 2.1),
    "CHE": ("Switzerland", 1.6, 0.7),
    "SWE": ("Sweden", 1.9, 1.8),
    "NOR": ("Norway", 1.5, 2.4),
    "DNK": ("Denmark", 1.6, 1.6),
    "FIN": ("Finland", 1.0, 1.8),
    "IRL": ("Ireland", 4.0, 1.9),
    "POL": ("Poland", 3.5, 3.0),
    "PRT": ("Portugal", 1.4, 1.7),
    "KOR": ("Korea", 2.8, 2.0),
    "NZL": ("New Zealand", 2.4, 2.3),
    "SGP": ("Singapore", 3.5, 1.8),
    "ZAF": ("South Africa", 1.2, 5.0),
}
INDICATORS: dict[str, dict[str, str]] = {
    "NGDP_RPCH": {"label": "Real GDP growth", "unit": "Annual percent change"},
    "PCPIPCH": {"label": "Inflation rate, average consumer prices", "unit": "Annual percent change"},
}
# The pandemic's slump and rebound, in points of growth, so that the clamp meets real swings.
SHOCKS = {2020: -7.0, 2021: 5.0}


def simulate(request: SimRequest) -> SimResponse:
    path = request.path.rstrip("/")
    if request.method != "GET" or not path.startswith(PREFIX + "/"):
        return SimResponse(404, "<html><body><h1>404 Not Found</h1></body></html>", {"Content-Type": "text/html"})
    indicator, *codes = path[len(PREFIX) + 1 :].split("/")
    if indicator == "indicators":
        return SimResponse(200, {"indicators": INDICATORS, "api": API})
    if indicator == "countries":
        return SimResponse(200, {"countries": {code: {"label": name} for code, (name, _, _) in COUNTRIES.items()}, "api": API})
    indicator = indicator.upper()
    countries = [code.upper() for code in codes if code.upper() in COUNTRIES] if codes else list(COUNTRIES)
    if indicator not in INDICATORS or not countries:
        return SimResponse(200, {"api": API})
    years = _periods(request.param("periods"))
    values = {
        code: {str(year): value for year in years if (value := _value(indicator, code, year)) is not None}
        for code in dict.fromkeys(countries)
    }
    return SimResponse(200, {"values": {indicator: values}, "api": API})


def _periods(text: str | None) -> list[int]:
    if not text:
        return list(range(FIRST_YEAR, LAST_YEAR + 1))
    years = [int(part) for part in text.split(",") if part.strip().isdigit()]
    return [year for year in years if FIRST_YEAR <= year <= LAST_YEAR]


def _value(indicator: str, code: str, year: int) -> float | None:
    if year == LAST_YEAR and seeded("imf", "last-missing", code, indicator).random() < 0.3:
        return None  # this country's projections stop a year earlier
    _, growth, inflation = COUNTRIES[code]
    rng = seeded("imf", indicator, code, year)
    if indicator == "NGDP_RPCH":
        value = growth + SHOCKS.get(year, 0.0) + rng.uniform(-1.5, 1.5)
    else:
        value = max(-1.0, inflation + rng.uniform(-1.2, 1.8))
    return round(value, 1)
