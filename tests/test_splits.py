import pytest

from lightning_ser.corpora.base import Utterance
from lightning_ser.splits import (LeakError, Split, assert_disjoint, held_out_speakers, kfold_by_speaker,
                                  leave_one_session_out, leave_one_speaker_out, make_splits, random_split,
                                  segment_rows)


def ravdess_like(n_actors=24, per_actor=5):
    utts = []
    for a in range(1, n_actors + 1):
        for k in range(per_actor):
            utts.append(Utterance(utt_id=f"ravdess/Actor_{a:02d}/{k}.wav", path="", corpus="ravdess",
                                  speaker=f"ravdess:{a:02d}", emotion="happy", raw_emotion="03",
                                  gender="male" if a % 2 else "female", duration=1.0 + k))
    return utts


def iemocap_like():
    utts = []
    for s in range(1, 6):
        for g in "FM":
            for k in range(4):
                utts.append(Utterance(utt_id=f"iemocap/Ses0{s}{g}_{k}", path="", corpus="iemocap",
                                      speaker=f"iemocap:Ses0{s}{g}", session=f"Ses0{s}", emotion="sad",
                                      raw_emotion="sad", gender="female" if g == "F" else "male"))
    return utts


def parts_speakers(utts, split):
    return [{utts[i].speaker for i in rows} for rows in (split.train, split.val, split.test)]


ALL_KINDS = [
    ("kfold", lambda u: kfold_by_speaker(u, 6)),
    ("loso", lambda u: leave_one_speaker_out(u)),
    ("holdout", lambda u: held_out_speakers(u, [f"ravdess:{a}" for a in range(21, 25)])),
    ("default", lambda u: make_splits(u, "default")),
]


@pytest.mark.parametrize("kind,make", ALL_KINDS, ids=[k for k, _ in ALL_KINDS])
def test_every_split_kind_is_speaker_disjoint_and_covers_all(kind, make):
    utts = ravdess_like()
    splits = make(utts)
    assert splits
    for sp in splits:
        tr, va, te = parts_speakers(utts, sp)
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert va, "validation speakers are drawn from the training side"
        assert sorted(sp.train + sp.val + sp.test) == list(range(len(utts)))
    # each speaker is tested exactly once across folds (for the fold protocols)
    if kind in ("kfold", "loso", "default"):
        tested = [s for sp in splits for s in parts_speakers(utts, sp)[2]]
        assert sorted(tested) == sorted({u.speaker for u in utts})


def test_ravdess_default_is_six_folds_of_four_gender_balanced_actors():
    utts = ravdess_like()
    splits = make_splits(utts, "default")
    assert len(splits) == 6
    for f, sp in enumerate(splits):
        test_speakers = {utts[i].speaker for i in sp.test}
        assert test_speakers == {f"ravdess:{a:02d}" for a in range(4 * f + 1, 4 * f + 5)}
        assert {utts[i].gender for i in sp.test} == {"male", "female"}


def test_leave_one_session_out_holds_out_both_speakers_of_a_session():
    utts = iemocap_like()
    splits = leave_one_session_out(utts)
    assert len(splits) == 5
    for sp in splits:
        test_sessions = {utts[i].session for i in sp.test}
        assert len(test_sessions) == 1
        assert {utts[i].speaker for i in sp.test} == {f"iemocap:{next(iter(test_sessions))}{g}" for g in "FM"}
        assert not test_sessions & {utts[i].session for i in sp.train + sp.val}
        assert_disjoint(utts, sp)
    assert make_splits(utts, "default")[0].name == splits[0].name


def test_assert_disjoint_catches_a_leak():
    utts = ravdess_like(4, 2)
    bad = Split("bad", train=(0, 1, 2), val=(4,), test=(3, 6))  # rows 2 and 3 share actor 02
    with pytest.raises(LeakError, match="ravdess:02"):
        assert_disjoint(utts, bad)


def test_random_split_warns_about_leakage():
    utts = ravdess_like(4, 10)
    with pytest.warns(UserWarning, match="same speakers"):
        sp = random_split(utts, seed=1)[0]
    assert sorted(sp.train + sp.val + sp.test) == list(range(len(utts)))
    with pytest.raises(LeakError):
        assert_disjoint(utts, sp)


def test_splits_are_deterministic_and_seed_changes_validation_speakers():
    utts = ravdess_like()
    a, b = kfold_by_speaker(utts, 6, seed=0), kfold_by_speaker(utts, 6, seed=0)
    assert a == b
    c = kfold_by_speaker(utts, 6, seed=5)
    assert [s.test for s in a] == [s.test for s in c]
    assert any(x.val != y.val for x, y in zip(a, c))


def test_bad_arguments_are_reported():
    utts = ravdess_like(4, 2)
    with pytest.raises(ValueError, match="k=9"):
        kfold_by_speaker(utts, 9)
    with pytest.raises(ValueError, match="not in the data"):
        held_out_speakers(utts, ["ravdess:99"])
    with pytest.raises(ValueError, match="unknown split protocol"):
        make_splits(utts, "bogus")
    with pytest.raises(ValueError, match="session"):
        leave_one_session_out(utts)


def test_segmentation_happens_after_split_and_last_window_overlaps():
    utts = ravdess_like()
    lengths = [int(u.duration * 16000) for u in utts]
    sp = kfold_by_speaker(utts, 6)[0]
    window = 3 * 16000
    train_segs, test_segs = segment_rows(sp.train, lengths, window), segment_rows(sp.test, lengths, window)
    # every window of an utterance stays in that utterance's part
    assert {s.row for s in train_segs} <= set(sp.train)
    assert {s.row for s in test_segs} <= set(sp.test)
    assert not {utts[s.row].speaker for s in train_segs} & {utts[s.row].speaker for s in test_segs}
    # a 4 s utterance → 2 windows: [0, 3 s) and [1 s, 4 s)
    row = next(i for i in sp.train if lengths[i] == 4 * 16000)
    segs = [s for s in train_segs if s.row == row]
    assert [(s.start, s.length) for s in segs] == [(0, window), (16000, window)]
    # a 1 s utterance → a single short segment
    row = next(i for i in sp.train if lengths[i] == 16000)
    assert [(s.start, s.length) for s in train_segs if s.row == row] == [(0, 16000)]


def test_two_speaker_corpus_trains_without_validation_speakers_when_asked():
    """TESS-like: leave one of two speakers out; one training-side speaker cannot also validate."""
    utts = ravdess_like(n_actors=2, per_actor=6)
    with pytest.raises(ValueError, match="val_fraction: 0"):  # the error says how
        leave_one_speaker_out(utts)
    for split in leave_one_speaker_out(utts, val_fraction=0.0):
        assert split.val == () and split.train and split.test
        assert_disjoint(utts, split)
