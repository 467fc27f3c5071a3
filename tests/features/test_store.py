import hashlib
import multiprocessing
import sqlite3
import warnings

import numpy as np
import pytest

from hateful_memes.features import store as feature_store
from hateful_memes.features.store import FeatureStore, StoreError, TextStore, migrate_shards

DIM = 8
SPACE = "image/test-0123456789abcdef"


def key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def vector(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal(DIM).astype(np.float32)


def flip_byte(path, space: str, k: str, offset: int = 3) -> None:
    """Damage one stored value in place, as a bad disk or a stray write would."""
    with sqlite3.connect(path) as db:
        [value] = db.execute("SELECT value FROM vectors WHERE space = ? AND key = ?",
                             (space, k)).fetchone()
        damaged = bytearray(value)
        damaged[offset] ^= 0x40
        db.execute("UPDATE vectors SET value = ? WHERE space = ? AND key = ?",
                   (bytes(damaged), space, k))


def test_rows_round_trip_exactly_and_only_the_asked_keys_come_back(tmp_path):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM) as store:
        store.write({key(i): vector(i) for i in range(20)})
    with FeatureStore(path, SPACE, DIM) as store:  # a fresh connection reads what was committed
        got = store.read([key(3), key(7), key(3), key(99)])
        assert len(store) == 20
    assert set(got) == {key(3), key(7)}
    assert np.array_equal(got[key(3)], vector(3)) and got[key(7)].dtype == np.float32


def test_spaces_do_not_see_each_others_rows(tmp_path):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM) as a, FeatureStore(path, "text/other-1", DIM) as b:
        a.write({key(1): vector(1)})
        b.write({key(1): vector(2)})
        assert np.array_equal(a.read([key(1)])[key(1)], vector(1))
        assert np.array_equal(b.read([key(1)])[key(1)], vector(2))


def test_more_keys_than_one_query_takes(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_store, "LOOKUP_CHUNK", 7)
    with FeatureStore(tmp_path / "f.sqlite3", SPACE, DIM) as store:
        store.write({key(i): vector(i) for i in range(30)})
        got = store.read([key(i) for i in range(0, 40, 2)])
    assert sorted(got) == sorted(key(i) for i in range(0, 30, 2))


def test_a_lookup_searches_the_index_instead_of_scanning_the_table(tmp_path):
    # What makes a lookup cost the keys asked for rather than the size of the cache.
    with FeatureStore(tmp_path / "f.sqlite3", SPACE, DIM) as store:
        store.write({key(i): vector(i) for i in range(50)})
        plan = store._db.execute("EXPLAIN QUERY PLAN " + feature_store.lookup_sql(3),
                                 (SPACE, key(1), key(2), key(3))).fetchall()
    details = " | ".join(row[-1] for row in plan)
    assert "SEARCH vectors USING INDEX" in details and "SCAN" not in details, details


def test_a_flipped_byte_is_detected_reported_and_repaired_by_the_next_write(tmp_path):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM) as store:
        store.write({key(i): vector(i) for i in range(5)})
    flip_byte(path, SPACE, key(2))
    with FeatureStore(path, SPACE, DIM) as store:
        with pytest.warns(UserWarning, match=f"{key(2)} is damaged.*checksum"):
            got = store.read([key(i) for i in range(5)])
        assert sorted(got) == sorted(key(i) for i in (0, 1, 3, 4))
        store.write({key(2): vector(2)})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.array_equal(store.read([key(2)])[key(2)], vector(2))


def test_a_value_moved_to_another_key_fails_its_checksum(tmp_path):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM) as store:
        store.write({key(1): vector(1), key(2): vector(2)})
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM vectors WHERE key = ?", (key(2),))
        db.execute("UPDATE vectors SET key = ? WHERE key = ?", (key(2), key(1)))
    with FeatureStore(path, SPACE, DIM) as store, pytest.warns(UserWarning, match="checksum"):
        assert store.read([key(2)]) == {}


def test_a_row_of_another_dimension_is_not_served(tmp_path):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM + 1) as wider:
        wider.write({key(1): np.ones(DIM + 1, np.float32)})
        with pytest.raises(ValueError, match=f"{key(2)} has shape"):
            wider.write({key(2): np.ones(DIM, np.float32)})
    with FeatureStore(path, SPACE, DIM) as store, pytest.warns(UserWarning, match="expected"):
        assert store.read([key(1)]) == {}


def test_a_file_that_is_not_a_store_is_named(tmp_path):
    path = tmp_path / "f.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="f.sqlite3.*not a usable feature store.*delete it"):
        FeatureStore(path, SPACE, DIM)


def test_damage_deep_in_the_file_is_named_when_a_lookup_reaches_it(tmp_path):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM) as store:
        store.write({key(i): vector(i) for i in range(3000)})
    data = bytearray(path.read_bytes())
    page = feature_store.PAGE_SIZE
    middle = len(data) // page // 2 * page
    assert middle > page  # the header page stays intact: the file opens
    data[middle:middle + page] = np.random.default_rng(0).bytes(page)
    path.write_bytes(bytes(data))
    with FeatureStore(path, SPACE, DIM) as store:
        with pytest.raises(StoreError, match=r"f\.sqlite3: cannot read the feature store "
                                             r"\(database disk image is malformed\); delete it"):
            store.read([key(i) for i in range(3000)])


def test_a_full_disk_is_named_and_the_file_not_blamed(tmp_path):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM) as store:
        store.write({key(i): vector(i) for i in range(10)})
        # SQLite's own limit on the file's pages fails a write as a full disk does (SQLITE_FULL).
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(StoreError, match=r"f\.sqlite3: cannot write to the feature store "
                                             r"\(database or disk is full\); free space") as e:
            store.write({key(i): vector(i) for i in range(10, 5000)})
        assert "delete" not in str(e.value)
        assert len(store) == 10  # the failed batch was rolled back whole
    with FeatureStore(path, SPACE, DIM) as store:
        assert len(store.read([key(i) for i in range(10)])) == 10


def test_a_store_this_user_cannot_write_is_named_and_not_blamed(tmp_path, monkeypatch):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM) as store:
        store.write({key(1): vector(1)})
    # Opened read-only, as a file or folder of another user would be (root ignores chmod).
    connect = sqlite3.connect
    monkeypatch.setattr(feature_store.sqlite3, "connect",
                        lambda p, **kw: connect(f"file:{p}?mode=ro", uri=True, **kw))
    with FeatureStore(path, SPACE, DIM) as store:
        assert list(store.read([key(1)])) == [key(1)]
        with pytest.raises(StoreError, match=r"f\.sqlite3: cannot write to the feature store "
                                             r"\(attempt to write a readonly database\); make "
                                             r"its folder and files writable") as e:
            store.write({key(2): vector(2)})
        assert "delete" not in str(e.value)


def test_a_store_from_newer_code_is_refused(tmp_path):
    path = tmp_path / "f.sqlite3"
    FeatureStore(path, SPACE, DIM).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={feature_store.SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        FeatureStore(path, SPACE, DIM)


def text(i: int) -> str:
    return f"caption {i} \u00e9\u4e2d" * (i % 3)  # "" for i % 3 == 0: no text on the image


def _writer(path: str, rank: int, start, errors, texts: bool = False) -> None:
    try:
        start.wait(30)
        # Each rank opens the (possibly not yet created) file itself, then writes overlapping
        # ranges in small transactions, reading back between them.
        store = (TextStore(path, TEXT_SPACE, timeout=60) if texts
                 else FeatureStore(path, SPACE, DIM, timeout=60))
        value = text if texts else vector
        with store:
            ids = list(range(rank * 40, rank * 40 + 120))
            for s in range(0, len(ids), 10):
                batch = ids[s:s + 10]
                store.write({key(i): value(i) for i in batch})
                got = store.read([key(i) for i in batch])
                assert all(np.array_equal(got[key(i)], value(i)) for i in batch)
    except BaseException as e:  # noqa: BLE001 - report everything to the parent
        errors.put(f"rank {rank}: {type(e).__name__}: {e}")


@pytest.mark.parametrize("texts", [False, True], ids=["vectors", "texts"])
def test_concurrent_writers_of_overlapping_keys_leave_every_row_intact(tmp_path, texts):
    ctx = multiprocessing.get_context("spawn")
    start, errors = ctx.Event(), ctx.Queue()
    path = str(tmp_path / "f.sqlite3")
    procs = [ctx.Process(target=_writer, args=(path, r, start, errors, texts)) for r in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert reported == [] and [p.exitcode for p in procs] == [0] * 4
    n = 3 * 40 + 120
    value = text if texts else vector
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no entry fails its checksum
        with (TextStore(path, TEXT_SPACE) if texts else FeatureStore(path, SPACE, DIM)) as store:
            got = store.read([key(i) for i in range(n)])
            assert len(store) == n
            [check] = store._db.execute("PRAGMA integrity_check").fetchone()
    assert check == "ok"
    assert all(np.array_equal(got[key(i)], value(i)) for i in range(n))


def test_former_shards_are_moved_into_the_store_and_their_folder_removed(tmp_path):
    folder = tmp_path / "image" / "spec-0123"
    folder.mkdir(parents=True)
    np.savez(folder / "a.npz", keys=np.array([key(1), key(2)], dtype="U64"),
             vectors=np.stack([vector(1), vector(2)]))
    np.savez(folder / "b.npz", keys=np.array([key(3)], dtype="U64"), vectors=vector(3)[None])
    (folder / "c.npz").write_bytes(b"truncated")
    with FeatureStore(tmp_path / "f.sqlite3", SPACE, DIM) as store:
        with pytest.warns(UserWarning, match="c.npz is unreadable"):
            assert migrate_shards(folder, store) == 3
        got = store.read([key(i) for i in range(1, 4)])
    assert all(np.array_equal(got[key(i)], vector(i)) for i in range(1, 4))
    assert not folder.exists() and not folder.parent.exists()


# --- texts (the captions OCR read) --------------------------------------------------------------

TEXT_SPACE = "ocr/test-0123456789abcdef"


def test_texts_round_trip_exactly_beside_vectors_of_the_same_keys(tmp_path):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM) as vectors, TextStore(path, TEXT_SPACE) as texts:
        vectors.write({key(i): vector(i) for i in range(6)})
        texts.write({key(i): text(i) for i in range(6)})
    with FeatureStore(path, SPACE, DIM) as vectors, TextStore(path, TEXT_SPACE) as texts:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # neither kind is taken for a damaged one of the other
            got = texts.read([key(i) for i in range(8)])
            assert all(np.array_equal(vectors.read([key(i)])[key(i)], vector(i))
                       for i in range(6))
        assert len(texts) == 6
    assert got == {key(i): text(i) for i in range(6)} and got[key(0)] == ""


def test_a_damaged_text_is_reported_and_repaired_by_the_next_write(tmp_path):
    path = tmp_path / "f.sqlite3"
    with TextStore(path, TEXT_SPACE) as store:
        store.write({key(i): text(i) for i in (1, 2)})
    flip_byte(path, TEXT_SPACE, key(2), offset=0)
    with TextStore(path, TEXT_SPACE) as store:
        with pytest.warns(UserWarning, match=f"text cache .*{key(2)} is damaged.*checksum"):
            assert store.read([key(1), key(2)]) == {key(1): text(1)}
        store.write({key(2): text(2)})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert store.read([key(2)]) == {key(2): text(2)}


def test_a_vector_is_not_served_as_a_text_nor_a_text_as_a_vector(tmp_path):
    path = tmp_path / "f.sqlite3"
    with FeatureStore(path, SPACE, DIM) as vectors:
        vectors.write({key(1): vector(1)})
    with TextStore(path, SPACE) as texts, pytest.warns(UserWarning, match="expected utf-8"):
        assert texts.read([key(1)]) == {}
    with TextStore(path, TEXT_SPACE) as texts:
        texts.write({key(1): "x" * (4 * DIM)})  # as many bytes as a vector
    with FeatureStore(path, TEXT_SPACE, DIM) as vectors, pytest.warns(UserWarning,
                                                                      match="expected <f4"):
        assert vectors.read([key(1)]) == {}


def test_a_text_store_takes_only_texts(tmp_path):
    with TextStore(tmp_path / "f.sqlite3", TEXT_SPACE) as store:
        with pytest.raises(TypeError, match=f"{key(1)} is a bytes, not a str"):
            store.write({key(1): b"caption"})
        assert len(store) == 0
