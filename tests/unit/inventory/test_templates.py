"""Path templates learned from traffic: plain calls, seeded randomness, no I/O."""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import pytest

from apiward.inventory.templates import (
    OVERFLOW,
    Template,
    TemplateLearner,
    classify_segment,
    singular,
)


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


WORDS = words("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
              "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
              "zulu red green blue amber violet quiet brave simple rapid")


def feed(learner: TemplateLearner, paths: list[str], method: str = "GET") -> TemplateLearner:
    for path in paths:
        learner.observe(method, path)
    return learner


def names(learner: TemplateLearner) -> list[str]:
    return [t.template for t in learner.templates()]


def slug(rng: random.Random, words: int = 4) -> str:
    return "-".join(rng.choice(WORDS) for _ in range(words))


def b64(rng: random.Random, n: int = 22) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    while True:
        token = "".join(rng.choice(alphabet) for _ in range(n))
        if classify_segment(token) == "base64":  # 2% of random tokens lack a digit
            return token


def hexid(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def count_nodes(data: dict) -> int:
    return 1 + sum(count_nodes(c) for c in data.get("l", {}).values()) + (
        count_nodes(data["p"]) if "p" in data else 0)


# -- classify_segment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "kind"),
    [
        ("8123", "int"), ("0", "int"), ("2024", "int"),
        ("3f2504e0-4f89-41d3-9a0c-0305e82c3301", "uuid"),
        ("3F2504E0-4F89-41D3-9A0C-0305E82C3301", "uuid"),
        ("507f1f77bcf86cd799439011", "hex"),  # a Mongo ObjectId
        ("da39a3ee5e6b4b0d3255bfef95601890afd80709", "hex"),  # a SHA-1
        ("DEADBEEF00C0FFEE", "hex"), ("1a2b3c4d", "hex"),
        ("pi_3MtwBwLkdIwHu7ix28a3tqPa", "base64"), ("cus_NffrFeUfNV2Hib", "base64"),
        ("dGhpcyBpcyBhIHRva2Vu", "base64"), ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0", "base64"),
        ("aGVsbG8gd29ybGQgIQ==", "base64"),
        ("2024-01-31", "date"), ("2024-01-31T10:20:30Z", "date"),
        ("2024-01-31T10:20:30.123+02:00", "date"),
        ("alice@example.com", "email"), ("bob.smith+tag%40mail.example.org", "email"),
    ],
)
def test_ids_by_their_shape(segment: str, kind: str) -> None:
    assert classify_segment(segment) == kind


@pytest.mark.parametrize(
    "segment",
    ["users", "me", "search", "v2", "api", "how-to-foo-bar", "iphone-15-pro-max-case",
     "deadbeef", "facade", "2024-13-01", "2024-01", "report-2024.pdf", "admin.php", ".env",
     "not@an", "", "SKU-12345", "HowToConfigureTheThing"],
)
def test_words_stay_literal(segment: str) -> None:
    assert classify_segment(segment) is None


@pytest.mark.parametrize(
    ("plural", "one"),
    [("users", "user"), ("categories", "category"), ("addresses", "address"), ("boxes", "box"),
     ("people", "people"), ("status", "status"), ("matches", "match"), ("orders", "order"),
     ("analysis", "analysis"), ("classes", "class")],
)
def test_singular_is_simple(plural: str, one: str) -> None:
    assert singular(plural) == one


# -- ids become params, words stay -------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "parent", "name"),
    [
        (lambda r: str(r.randint(1, 10**7)), "users", "user_id"),
        (lambda r: uid(r), "orders", "order_id"),
        (lambda r: uid(r).upper(), "accounts", "account_id"),
        (lambda r: hexid(r, 24), "documents", "document_id"),
        (lambda r: hexid(r, 40), "commits", "commit_id"),
        (lambda r: b64(r), "tokens", "token_id"),
        (lambda r: f"20{r.randint(10, 29)}-0{r.randint(1, 9)}-1{r.randint(0, 9)}", "days",
         "day_id"),
        (lambda r: f"user{r.randint(1, 999)}@example.com", "subscribers", "subscriber_id"),
        (lambda r: f"{r.choice(WORDS)}{r.randint(1, 99)}%40mail.example", "contacts",
         "contact_id"),
    ],
)
def test_each_id_kind_becomes_a_param_at_once(make: Callable[[random.Random], str],
                                               parent: str, name: str) -> None:
    rng = random.Random(7)
    learner = feed(TemplateLearner(), [f"/{parent}/{make(rng)}" for _ in range(3)])
    assert names(learner) == [f"/{parent}/{{{name}}}"]
    [template] = learner.templates()
    assert (template.count, template.methods, template.params) == (3, {"GET": 3}, [name])
    assert learner.template(f"/{parent}/{make(rng)}") == f"/{parent}/{{{name}}}"


def test_param_names_follow_the_parent() -> None:
    learner = TemplateLearner()
    for path in ["/categories/5", "/addresses/6", "/boxes/7", "/people/8", "/9",
                 "/users/1/2", "/users/1/users/2", "/3/4"]:
        learner.observe("GET", path)
    assert names(learner) == [
        "/addresses/{address_id}", "/boxes/{box_id}", "/categories/{category_id}",
        "/people/{people_id}", "/users/{user_id}/users/{user_id2}", "/users/{user_id}/{id}",
        "/{id}", "/{id}/{id2}",
    ]
    assert learner.template("/users/3/users/4") == "/users/{user_id}/users/{user_id2}"
    assert [t.params for t in learner.templates()][4] == ["user_id", "user_id2"]


def test_versions_and_prefixes_stay_literal() -> None:
    rng = random.Random(3)
    paths = [f"/api/{rng.choice(['v1', 'v2', 'v2', 'v3'])}/items/{rng.randint(1, 999)}"
             for _ in range(500)]
    learner = feed(TemplateLearner(), paths)
    assert names(learner) == ["/api/v1/items/{item_id}", "/api/v2/items/{item_id}",
                              "/api/v3/items/{item_id}"]


def test_a_year_is_literal_while_alone_and_a_param_when_varied() -> None:
    alone = feed(TemplateLearner(), ["/reports/2024"] * 30 + ["/reports/daily"] * 5)
    assert names(alone) == ["/reports/2024", "/reports/daily"]
    varied = feed(TemplateLearner(), ["/reports/2024", "/reports/daily", "/reports/2023",
                                      "/reports/2019"])
    assert names(varied) == ["/reports/daily", "/reports/{report_id}"]
    assert varied.template("/reports/2031") == "/reports/{report_id}"
    # Among numeric ids, a year-like number is just one more id.
    ids = feed(TemplateLearner(), ["/users/12345", "/users/1999", "/users/77"])
    assert names(ids) == ["/users/{user_id}"]


def test_users_me_beside_numeric_ids() -> None:
    rng = random.Random(11)
    paths = ["/users/me"] * 50 + [f"/users/{rng.randint(1, 10**6)}" for _ in range(500)]
    rng.shuffle(paths)
    learner = feed(TemplateLearner(), paths)
    assert names(learner) == ["/users/me", "/users/{user_id}"]
    assert {t.template: t.count for t in learner.templates()} == {
        "/users/me": 50, "/users/{user_id}": 500}


@pytest.mark.parametrize("share", [0.15, 0.3, 0.5])
def test_users_me_beside_word_like_usernames(share: float) -> None:
    """Usernames are words: they collapse by their cardinality, ``me`` stays by its
    frequency, even when it shows up too rarely at first to be kept at the collapse."""
    rng = random.Random(5)
    paths = [("/users/me" if rng.random() < share else f"/users/{slug(rng, 2)}")
             for _ in range(3000)]
    learner = feed(TemplateLearner(), paths)
    assert names(learner) == ["/users/me", "/users/{user_id}"]
    counts = {t.template: t.count for t in learner.templates()}
    assert counts["/users/me"] >= 0.8 * paths.count("/users/me")
    assert learner.template("/users/someone-new") == "/users/{user_id}"


def test_nested_resources() -> None:
    rng = random.Random(2)
    paths = []
    for _ in range(2000):
        user, order = rng.randint(1, 300), uid(rng)
        paths.append(rng.choice([
            f"/users/{user}", f"/users/{user}/orders", f"/users/{user}/orders/{order}",
            f"/users/{user}/orders/{order}/items/{rng.randint(1, 9)}",
        ]))
    learner = feed(TemplateLearner(), paths)
    assert names(learner) == [
        "/users/{user_id}", "/users/{user_id}/orders", "/users/{user_id}/orders/{order_id}",
        "/users/{user_id}/orders/{order_id}/items/{item_id}",
    ]


def test_few_repeated_word_siblings_stay_literal() -> None:
    rng = random.Random(4)
    paths = [f"/reports/{rng.choice(['daily', 'weekly', 'monthly'])}" for _ in range(5000)]
    learner = feed(TemplateLearner(), paths)
    assert names(learner) == ["/reports/daily", "/reports/monthly", "/reports/weekly"]


def test_thirty_word_siblings_with_traffic_stay_literal() -> None:
    """A real API's resources at one node: 30 words, each called many times."""
    rng = random.Random(6)
    resources = [f"{a}{b}" for a in ("ab", "cd", "ef", "gh", "ij", "kl") for b in WORDS[:5]]
    learner = feed(TemplateLearner(), [f"/v1/{rng.choice(resources)}" for _ in range(3000)])
    assert len(learner.templates()) == 30
    assert all("{" not in t for t in names(learner))


def test_high_cardinality_slugs_collapse_after_min_samples() -> None:
    rng = random.Random(8)
    slugs = sorted({"how-to-" + slug(rng, 3) for _ in range(600)})[:500]
    learner = TemplateLearner()
    for i, article in enumerate(slugs):
        learner.observe("GET", f"/articles/{article}")
        if i == 2 * learner.min_samples:
            assert names(learner) == ["/articles/{article_id}"]
    assert names(learner) == ["/articles/{article_id}"]
    assert learner.templates()[0].count == 500
    assert learner.template("/articles/how-to-anything") == "/articles/{article_id}"
    # And the same slugs repeated a few times each, in random order.
    again = TemplateLearner()
    feed(again, [f"/articles/{a}" for a in rng.sample(slugs * 4, 2000)])
    assert names(again) == ["/articles/{article_id}"]


def test_slug_siblings_share_one_subtree() -> None:
    rng = random.Random(9)
    paths = [f"/artists/{slug(rng, 2)}{rng.choice(['', '/artworks'])}" for _ in range(1000)]
    learner = feed(TemplateLearner(), paths)
    assert names(learner) == ["/artists/{artist_id}", "/artists/{artist_id}/artworks"]


def test_siblings_that_do_not_look_alike_overflow_instead_of_collapsing() -> None:
    """Many one-off words of mixed shapes (``alpha.bravo``, ``AlphaBravo``, ``ALPHA~``, as a
    scanner's list) are not one resource's ids: they stay literal up to ``max_children``,
    then further ones are counted in ``/{...}``; the real endpoints keep their templates."""
    rng = random.Random(10)
    shapes = [lambda a, b: f"{a}.{b}", lambda a, b: f"{a.title()}{b.title()}",
              lambda a, b: f"{a}{b}", lambda a, b: f"{a.upper()}~{b}"]
    junk = sorted({shapes[i % 4](rng.choice(WORDS), rng.choice(WORDS)) for i in range(600)})
    rng.shuffle(junk)
    paths = ["/users/1", "/orders/2"] * 100 + [f"/{j}" for j in junk[:400]]
    learner = feed(TemplateLearner(max_children=100), paths)
    found = names(learner)
    assert "/users/{user_id}" in found and "/orders/{order_id}" in found
    assert not any(t.startswith("/{id}") for t in found)
    over = next(t for t in learner.templates() if t.template == "/" + OVERFLOW)
    assert over.count == 400 - (100 - 2)
    assert sum(t.count for t in learner.templates()) == len(paths)
    assert learner.template("/Something.New") == "/" + OVERFLOW
    assert learner.template("/users/3") == "/users/{user_id}"


# -- bounded memory ----------------------------------------------------------------------------


def random_path(rng: random.Random) -> str:
    def segment() -> str:
        pick = rng.random()
        if pick < 0.3:
            return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(
                rng.randint(3, 12)))
        if pick < 0.5:
            return str(rng.getrandbits(32))
        if pick < 0.6:
            return uid(rng)
        if pick < 0.8:
            return rng.choice(WORDS) + rng.choice([".php", "-x", "_1", ".js", ""])
        return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(8))

    return "/" + "/".join(segment() for _ in range(rng.randint(1, 6)))


def test_a_million_random_paths_stay_within_bounds() -> None:
    rng = random.Random(12)
    learner = TemplateLearner()
    real = ["/users/me", "/users/42", "/users/42/orders/7", "/reports/daily"]
    feed(learner, real * 50)
    paths = [random_path(rng) for _ in range(100_000)]
    methods = ["GET", "POST", "PUT", "DELETE"]
    most = 0
    started = time.perf_counter()
    for i in range(1_000_000):
        learner.observe(methods[i & 3], paths[i % 100_000] if i & 1 else random_path(rng))
        if i % 50_000 == 0:
            most = max(most, learner.memory_nodes())
    elapsed = time.perf_counter() - started
    assert learner.memory_nodes() <= learner.max_nodes and most <= learner.max_nodes
    state = learner.to_dict()
    assert count_nodes(state["root"]) == learner.memory_nodes()
    assert sum(t.count for t in learner.templates()) == 1_000_000 + 200
    # Real endpoints learned before the flood keep their templates.
    assert learner.template("/users/me") == "/users/me"
    assert learner.template("/users/9") == "/users/{user_id}"
    assert learner.template("/users/9/orders/1") == "/users/{user_id}/orders/{order_id}"
    assert len(json.dumps(state)) < 4_000_000
    print(f"\n1M random paths: {learner.memory_nodes()} nodes (max {learner.max_nodes}), "
          f"{len(learner.templates())} templates, {len(json.dumps(state)) // 1024} KiB state, "
          f"{elapsed:.1f} s incl. generating half of the paths")


def test_deep_and_long_paths_are_bounded() -> None:
    learner = TemplateLearner(max_nodes=100)
    learner.observe("GET", "/a" * 1000)
    learner.observe("GET", "/" + "x" * 10_000)
    assert learner.memory_nodes() <= 100
    assert learner.template("/" + "y" * 10_000) == "/{id}"
    assert learner.template("/a" * 1000).endswith("/" + OVERFLOW)
    assert learner.templates()[0].count == 1


def test_many_methods_are_bounded() -> None:
    learner = TemplateLearner()
    for i in range(100):
        learner.observe(f"M{i}", "/x")
    [template] = learner.templates()
    assert len(template.methods) == 17 and template.methods["OTHER"] == 84


def test_a_query_is_never_stored() -> None:
    learner = feed(TemplateLearner(), ["/search?q=secret-token"])
    assert names(learner) == ["/search"]
    assert "secret" not in json.dumps(learner.to_dict())


def test_a_full_learner_counts_new_paths_in_overflow() -> None:
    learner = TemplateLearner(max_nodes=10)
    feed(learner, [f"/{w}/x" for w in WORDS[:10]])
    assert learner.memory_nodes() <= 10
    assert sum(t.count for t in learner.templates()) == 10
    assert learner.template("/zzz/yyy") == "/" + OVERFLOW


# -- accuracy ----------------------------------------------------------------------------------

ZIPF_CACHE: dict[tuple[int, float], list[float]] = {}


def zipf(rng: random.Random, n: int, s: float) -> int:
    """An id in 1..n, popular ones first (so some ids repeat a lot, most rarely)."""
    key = (n, s)
    if key not in ZIPF_CACHE:
        weights = [1 / (k**s) for k in range(1, n + 1)]
        total, acc, cum = sum(weights), 0.0, []
        for w in weights:
            acc += w / total
            cum.append(acc)
        ZIPF_CACHE[key] = cum
    cum = ZIPF_CACHE[key]
    lo, hi, x = 0, n - 1, rng.random()
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo + 1


def pool(make: Callable[[random.Random], str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    values: list[str] = []
    seen: set[str] = set()
    while len(values) < n:
        value = make(rng)
        if value not in seen:
            seen.add(value)
            values.append(value)
    return values


FIRST = words("claude pablo frida vincent georgia rembrandt johannes mary edvard gustav henri "
              "salvador wassily jackson andy yayoi katsushika hilma sandro artemisia")
LAST = words("monet picasso kahlo gogh okeeffe rijn vermeer cassatt munch klimt matisse dali "
             "kandinsky pollock warhol kusama hokusai klint botticelli gentileschi")
NOUNS = words("garden kitchen outdoor lighting furniture audio camera gaming office travel "
              "fitness beauty baby pets tools books music sports toys jewelry")


def shop_templates() -> list[tuple[str, str, float, Callable[[random.Random], str]]]:
    """At least 30 known templates (method, template, weight, path maker) of a shop, a
    bank and a museum API: nested resources, literal siblings, versions, every id kind."""
    users = pool(lambda r: str(r.randint(1, 10**6)), 5000, 1)
    products = pool(lambda r: str(r.randint(1, 10**5)), 3000, 2)
    orders = pool(lambda r: hexid(r, 24), 4000, 3)
    categories = pool(lambda r: f"{r.choice(NOUNS)}-{r.choice(NOUNS)}-{r.choice(NOUNS)}",
                      300, 4)
    accounts = pool(lambda r: uid(r).upper(), 2000, 5)
    artists = pool(lambda r: f"{r.choice(FIRST)}-{r.choice(LAST)}", 400, 6)
    artworks = pool(lambda r: str(r.randint(1, 10**6)), 8000, 7)
    emails = pool(lambda r: f"{r.choice(FIRST)}.{r.choice(LAST)}{r.randint(1, 99)}@mail.test",
                  3000, 8)

    def z(values: list[str], s: float = 0.7) -> Callable[[random.Random], str]:
        return lambda r: values[zipf(r, len(values), s) - 1]

    u, p, o, a = z(users), z(products), z(orders), z(accounts)
    return [
        # shop, /api/v2 (and a little of the old /api/v1)
        ("GET", "/api/v2/products", 30, lambda r: "/api/v2/products"),
        ("GET", "/api/v2/products/search", 15, lambda r: "/api/v2/products/search"),
        ("GET", "/api/v2/products/{}", 60, lambda r: f"/api/v2/products/{p(r)}"),
        ("GET", "/api/v2/products/{}/reviews", 10,
         lambda r: f"/api/v2/products/{p(r)}/reviews"),
        ("GET", "/api/v2/products/{}/reviews/{}", 8,
         lambda r: f"/api/v2/products/{p(r)}/reviews/{uid(r)}"),
        ("GET", "/api/v2/categories", 5, lambda r: "/api/v2/categories"),
        ("GET", "/api/v2/categories/{}", 25,
         lambda r: f"/api/v2/categories/{z(categories, 0.5)(r)}"),
        ("GET", "/api/v2/cart", 20, lambda r: "/api/v2/cart"),
        ("PUT", "/api/v2/cart/items/{}", 12, lambda r: f"/api/v2/cart/items/{p(r)}"),
        ("GET", "/api/v2/orders/recent", 10, lambda r: "/api/v2/orders/recent"),
        ("GET", "/api/v2/orders/{}", 30, lambda r: f"/api/v2/orders/{o(r)}"),
        ("GET", "/api/v2/orders/{}/items", 10, lambda r: f"/api/v2/orders/{o(r)}/items"),
        ("GET", "/api/v2/users/me", 40, lambda r: "/api/v2/users/me"),
        ("GET", "/api/v2/users/{}", 20, lambda r: f"/api/v2/users/{u(r)}"),
        ("GET", "/api/v2/users/{}/addresses/{}", 6,
         lambda r: f"/api/v2/users/{u(r)}/addresses/{r.randint(1, 5)}"),
        ("GET", "/api/v2/users/by-email/{}", 4,
         lambda r: f"/api/v2/users/by-email/{z(emails, 0.3)(r)}"),
        ("GET", "/api/v1/products", 2, lambda r: "/api/v1/products"),
        # bank, /bank/v1
        ("GET", "/bank/v1/accounts", 15, lambda r: "/bank/v1/accounts"),
        ("GET", "/bank/v1/accounts/{}", 30, lambda r: f"/bank/v1/accounts/{a(r)}"),
        ("GET", "/bank/v1/accounts/{}/transactions", 25,
         lambda r: f"/bank/v1/accounts/{a(r)}/transactions"),
        ("GET", "/bank/v1/accounts/{}/transactions/{}", 20,
         lambda r: f"/bank/v1/accounts/{a(r)}/transactions/txn_{b64(r, 20)}"),
        ("GET", "/bank/v1/accounts/{}/statements/{}", 6,
         lambda r: f"/bank/v1/accounts/{a(r)}/statements/"
                   f"20{r.randint(18, 24)}-{r.randint(1, 12):02}-{r.randint(1, 28):02}"),
        ("GET", "/bank/v1/reports/daily", 8, lambda r: "/bank/v1/reports/daily"),
        ("GET", "/bank/v1/reports/weekly", 4, lambda r: "/bank/v1/reports/weekly"),
        ("GET", "/bank/v1/reports/monthly", 3, lambda r: "/bank/v1/reports/monthly"),
        ("GET", "/bank/v1/reports/{}", 3,
         lambda r: f"/bank/v1/reports/{r.randint(2015, 2024)}"),
        ("POST", "/bank/v1/transfers", 10, lambda r: "/bank/v1/transfers"),
        ("GET", "/bank/v1/transfers/{}", 10, lambda r: f"/bank/v1/transfers/{hexid(r, 40)}"),
        # museum, /museum/v3
        ("GET", "/museum/v3/search", 10, lambda r: "/museum/v3/search"),
        ("GET", "/museum/v3/artworks/{}", 40,
         lambda r: f"/museum/v3/artworks/{z(artworks, 0.9)(r)}"),
        ("GET", "/museum/v3/artworks/{}/images/{}", 15,
         lambda r: f"/museum/v3/artworks/{z(artworks, 0.9)(r)}/images/{uid(r)}"),
        ("GET", "/museum/v3/artists/{}", 20, lambda r: f"/museum/v3/artists/{z(artists)(r)}"),
        ("GET", "/museum/v3/artists/{}/artworks", 8,
         lambda r: f"/museum/v3/artists/{z(artists)(r)}/artworks"),
        ("GET", "/museum/v3/exhibitions/current", 12, lambda r: "/museum/v3/exhibitions/current"),
        ("GET", "/museum/v3/exhibitions/{}", 6,
         lambda r: f"/museum/v3/exhibitions/{r.randint(1, 400)}"),
        ("POST", "/museum/v3/tickets", 5, lambda r: "/museum/v3/tickets"),
        ("GET", "/museum/v3/tickets/{}", 5, lambda r: f"/museum/v3/tickets/{b64(r, 16)}"),
        ("GET", "/health", 20, lambda r: "/health"),
    ]


def shop_traffic(rng: random.Random, calls: int) -> list[tuple[str, str, str]]:
    """(method, path, true template) calls drawn by weight, in random order."""
    known = shop_templates()
    weights = [w for _m, _t, w, _make in known]
    picks = rng.choices(range(len(known)), weights=weights, k=calls)
    return [(known[i][0], known[i][3](rng), known[i][1]) for i in picks]


def test_observe_cost_per_call() -> None:
    """The figure the issue asks for: µs per observe() on realistic traffic (target < 5)."""
    learner = TemplateLearner()
    traffic = shop_traffic(random.Random(13), 20_000)
    paths = [path for _method, path, _template in traffic]
    feed(learner, paths)  # warm: the structure is learned, ids keep coming
    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        for method, path, _template in traffic:
            learner.observe(method, path)
        rounds.append((time.perf_counter() - started) / len(traffic) * 1e6)
    print(f"\nobserve(): {min(rounds):.2f} us per call (best of 3 x {len(traffic)})")
    assert min(rounds) < 20  # generous for a loaded CI box; the target is 5


def normalised(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", template)


def accuracy(learner: TemplateLearner, traffic: list[tuple[str, str, str]]
             ) -> tuple[float, set[str], dict[str, set[str]], set[str]]:
    """Share of true templates recovered exactly (every call counted under it), the ones
    missed, learned templates that took several true ones, and learned ones that match
    nothing true."""
    learned_by_true: dict[str, set[str]] = defaultdict(set)
    true_by_learned: dict[str, set[str]] = defaultdict(set)
    for _method, path, true in traffic:
        learned = normalised(learner.template(path))
        learned_by_true[true].add(learned)
        true_by_learned[learned].add(true)
    learned_set = {normalised(t.template) for t in learner.templates()}
    missed = {t for t, got in learned_by_true.items() if got != {t} or t not in learned_set}
    merged = {k: v for k, v in true_by_learned.items() if len(v) > 1}
    spurious = learned_set - set(learned_by_true)
    return 1 - len(missed) / len(learned_by_true), missed, merged, spurious


def test_accuracy_on_known_templates() -> None:
    rng = random.Random(14)
    traffic = shop_traffic(rng, 60_000)
    assert len({true for _m, _p, true in traffic}) >= 30
    learner = TemplateLearner()
    for method, path, _true in traffic:
        learner.observe(method, path)
    share, missed, merged, spurious = accuracy(learner, traffic)
    print(f"\naccuracy: {share:.1%} of {len(shop_templates())} templates recovered exactly; "
          f"missed {sorted(missed)}, merged {merged}, spurious {sorted(spurious)}")
    assert share >= 0.95
    assert not merged
    assert not spurious


@pytest.mark.parametrize("seed", [15, 16, 17])
def test_accuracy_holds_over_seeds_and_sizes(seed: int) -> None:
    rng = random.Random(seed)
    traffic = shop_traffic(rng, rng.choice([8_000, 20_000, 40_000]))
    learner = TemplateLearner()
    for method, path, _true in traffic:
        learner.observe(method, path)
    share, missed, merged, _spurious = accuracy(learner, traffic)
    assert share >= 0.95, missed
    assert not merged


# -- state ------------------------------------------------------------------------------------


def summary(learner: TemplateLearner) -> dict[str, tuple[int, dict[str, int]]]:
    return {t.template: (t.count, t.methods) for t in learner.templates()}


def test_to_dict_from_dict_round_trip() -> None:
    rng = random.Random(18)
    traffic = shop_traffic(rng, 10_000)
    learner = TemplateLearner(max_nodes=5000, max_children=50, min_samples=10)
    for method, path, _true in traffic:
        learner.observe(method, path)
    state = json.loads(json.dumps(learner.to_dict()))
    again = TemplateLearner.from_dict(state)
    assert (again.max_nodes, again.max_children, again.min_samples) == (5000, 50, 10)
    assert summary(again) == summary(learner)
    assert again.memory_nodes() == learner.memory_nodes()
    assert again.to_dict() == learner.to_dict()
    # And it goes on learning the same way.
    more = shop_traffic(rng, 5_000)
    for method, path, _true in more:
        learner.observe(method, path)
        again.observe(method, path)
    assert summary(again) == summary(learner)
    with pytest.raises(ValueError, match="format"):
        TemplateLearner.from_dict({"format": 99})
    with pytest.raises(ValueError, match="damaged"):
        TemplateLearner.from_dict({**state, "root": {"l": {"x": {}}}})


def test_merge_of_halves_equals_one_learner_fed_all() -> None:
    rng = random.Random(19)
    traffic = shop_traffic(rng, 40_000)
    whole, first, second = TemplateLearner(), TemplateLearner(), TemplateLearner()
    for i, (method, path, _true) in enumerate(traffic):
        whole.observe(method, path)
        (first if i % 2 else second).observe(method, path)
    before = first.to_dict()
    merged = TemplateLearner.from_dict(second.to_dict())
    merged.merge(first)
    assert first.to_dict() == before  # the other learner is left as it was
    assert names(merged) == names(whole)
    assert {t.template: t.methods.keys() for t in merged.templates()} == {
        t.template: t.methods.keys() for t in whole.templates()}
    assert sum(t.count for t in merged.templates()) == len(traffic)
    for mine, theirs in zip(merged.templates(), whole.templates(), strict=True):
        assert abs(mine.count - theirs.count) <= max(20, theirs.count // 50), mine.template
    assert count_nodes(merged.to_dict()["root"]) == merged.memory_nodes()
    for _method, path, _true in traffic[:2000]:
        assert merged.template(path) == whole.template(path)


def test_merge_stays_within_bounds() -> None:
    rng = random.Random(20)
    one, two = TemplateLearner(max_nodes=300), TemplateLearner(max_nodes=300)
    for i in range(20_000):
        (one if i % 2 else two).observe("GET", random_path(rng))
    one.merge(two)
    assert one.memory_nodes() <= 300
    assert count_nodes(one.to_dict()["root"]) == one.memory_nodes()
    assert sum(t.count for t in one.templates()) == 20_000


def test_template_dataclass_shape() -> None:
    learner = feed(TemplateLearner(), ["/users/1"], method="DELETE")
    assert learner.templates() == [Template("/users/{user_id}", {"DELETE": 1}, 1, ["user_id"])]
