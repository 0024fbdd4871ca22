"""Simulator of the Semrush Analytics API v3 phrase reports (`../shared/api-formats.md`, 5).

`GET /?type=phrase_related|phrase_this&key=KEY&phrase=...&database=..&export_columns=Ph,Nq,Cp,Co
&display_limit=N&display_offset=M` answers semicolon-separated text: a header row of readable
names in the order of `export_columns` (Ph Keyword, Nq Search Volume, Cp CPC, Co Competition,
Db Database), then one row per phrase. Rows are plausible and deterministic per phrase and
database (`seeded`); some phrases have no advertisers (CPC and Competition 0). Some databases
answer with `\\r\\n` line endings, the others with `\\n` (deterministic per database).

Errors are Semrush's plain-text bodies: a missing or empty `key` gets `ERROR 120 :: WRONG KEY -
ID PAIR` with HTTP 403 (any other key is accepted); an unknown database, an empty phrase, an
unsupported report type, or a page past the last row gets `ERROR 50 :: NOTHING FOUND` with 200.
"""

from __future__ import annotations

from sources.simulators import SimRequest, SimResponse, seeded

DATABASES = frozenset(
    {
        "us", "uk", "ca", "au", "de", "fr", "es", "it", "br", "nl", "be", "ch", "at", "dk", "fi",
        "ie", "no", "pl", "se", "pt", "in", "jp", "mx", "ar", "sg", "hk", "nz", "tr", "il", "za",
    }
)  # fmt: skip
COLUMN_HEADERS = {"Ph": "Keyword", "Nq": "Search Volume", "Cp": "CPC", "Co": "Competition", "Db": "Database"}
DEFAULT_COLUMNS = ("Ph", "Nq", "Cp", "Co")
REPORT_TYPES = ("phrase_related", "phrase_this")
# Words that turn a seed phrase into its related phrases.
MODIFIERS = (
    "best", "cheap", "near me", "online", "reviews", "buy", "price", "deals", "free", "top",
    "how to choose", "compare", "discount", "services", "company", "for small business", "local",
    "guide", "ideas", "alternatives", "cost", "quotes", "professional", "affordable", "fast",
)  # fmt: skip
# Share of related phrases nobody bids on (Semrush reports CPC 0 and Competition 0 for them).
SHARE_WITHOUT_ADVERTISERS = 0.1

NOTHING_FOUND = "ERROR 50 :: NOTHING FOUND"
WRONG_KEY = "ERROR 120 :: WRONG KEY - ID PAIR"


def simulate(request: SimRequest) -> SimResponse:
    if request.path.rstrip("/") != "":
        return SimResponse(404, f"no such endpoint: {request.path}")
    if not (request.param("key") or "").strip():
        return SimResponse(403, WRONG_KEY)
    report_type = request.param("type", "")
    phrase = (request.param("phrase") or "").strip().lower()
    database = (request.param("database") or "").strip().lower()
    if report_type not in REPORT_TYPES or not phrase or database not in DATABASES:
        return SimResponse(200, NOTHING_FOUND)

    rows = _related_rows(phrase, database)
    if report_type == "phrase_this":
        rows = rows[:1]
    offset = _whole_number(request.param("display_offset"), 0)
    limit = _whole_number(request.param("display_limit"), len(rows))
    page = rows[offset : offset + limit]
    if not page:
        return SimResponse(200, NOTHING_FOUND)

    columns = _columns(request.param("export_columns"))
    lines = [";".join(COLUMN_HEADERS[column] for column in columns)]
    lines += [";".join(str(row[column]) for column in columns) for row in page]
    return SimResponse(200, line_ending(database).join(lines))


def line_ending(database: str) -> str:
    """`\\r\\n` for some databases, `\\n` for the others: the same database always the same."""
    return "\r\n" if seeded("semrush line endings", database).random() < 0.5 else "\n"


def _related_rows(phrase: str, database: str) -> list[dict[str, str]]:
    rng = seeded("semrush", phrase, database)
    # A phrase's market: its typical bid and how contested it is, then each phrase around them.
    base_cpc = rng.uniform(0.5, 6.0)
    base_competition = rng.uniform(0.3, 0.9)
    modifiers = list(MODIFIERS)
    rng.shuffle(modifiers)
    count = rng.randint(15, len(modifiers))
    keywords = [phrase] + [
        f"{modifier} {phrase}" if index % 2 else f"{phrase} {modifier}"
        for index, modifier in enumerate(modifiers[:count])
    ]
    rows = []
    for index, keyword in enumerate(keywords):
        # The seed phrase is the head term; related phrases spread over the long tail.
        volume = _semrush_volume(10 ** rng.uniform(4.0, 5.3) if index == 0 else 10 ** rng.uniform(1.3, 4.3))
        if index and rng.random() < SHARE_WITHOUT_ADVERTISERS:
            cpc, competition = 0.0, 0.0
        else:
            cpc = base_cpc * rng.uniform(0.4, 2.2)
            competition = min(1.0, max(0.01, base_competition + rng.uniform(-0.25, 0.25)))
        rows.append(
            {"Ph": keyword, "Nq": str(volume), "Cp": f"{cpc:.2f}", "Co": f"{competition:.2f}", "Db": database}
        )
    # phrase_related lists the seed phrase first, then the related phrases by volume.
    return rows[:1] + sorted(rows[1:], key=lambda row: -int(row["Nq"]))


def _semrush_volume(value: float) -> int:
    # Semrush reports volumes rounded to two significant digits (110000, 9900, 720, ...).
    magnitude = 10 ** max(0, len(str(int(value))) - 2)
    return max(10, int(round(value / magnitude)) * magnitude)


def _columns(export_columns: str | None) -> tuple[str, ...]:
    requested = [code.strip() for code in (export_columns or "").split(",")]
    columns = tuple(code for code in requested if code in COLUMN_HEADERS)
    return columns or DEFAULT_COLUMNS


def _whole_number(text: str | None, default: int) -> int:
    try:
        return max(0, int(text)) if text is not None else default
    except ValueError:
        return default
