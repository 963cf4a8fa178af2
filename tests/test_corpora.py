"""Corpus readers on tiny corpora written in each corpus's own conventions (tests/corpus_builders.py)."""
from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

import corpus_builders as cb
from lightning_ser.corpora import get_reader, reader_names
from lightning_ser.corpora.base import CorpusError, CorpusProblems, Utterance, drop_duplicate_takes, save_manifest
from lightning_ser.labels import UNIFIED

CORPORA = ("ravdess", "tess", "cremad", "savee", "iemocap", "aesdd", "emodb", "manifest")
BUILDERS = {"ravdess": cb.make_ravdess, "tess": cb.make_tess, "cremad": cb.make_cremad,
            "savee": cb.make_savee, "iemocap": cb.make_iemocap, "aesdd": cb.make_aesdd,
            "emodb": cb.make_emodb, "manifest": cb.make_manifest}
TRAP_REASON = {"empty": "0 bytes", "nodata": "'data' chunk", "badname": "name", "missing": "No such file"}


def read(corpus: str, root, **kw):
    """Read quietly (skip warnings are asserted where they matter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_reader(corpus)(root, **kw)


def by_name(scan) -> dict[str, Utterance]:
    return {Path(u.path).name: u for u in scan.utterances}


# ----------------------------------------------------------------------------- every reader
def test_every_reader_is_registered():
    assert set(CORPORA) | {"synthetic"} <= set(reader_names())


@pytest.mark.parametrize("corpus", CORPORA)
def test_traps_are_skipped_and_named(corpus, tmp_path):
    root = BUILDERS[corpus](tmp_path / corpus)
    written = {p for p in root.rglob("*.wav") if not p.name.startswith(".")}
    traps = cb.add_traps(corpus, root)
    junk = [cb.write_empty(root / "__MACOSX" / "._a.wav"),  # archive/OS leftovers: not corpus files
            cb.write_empty(next(iter(written)).with_name("._resource_fork.wav"))]
    with pytest.warns(UserWarning) as record:
        scan = get_reader(corpus)(root)
    warned = " ".join(str(w.message) for w in record)

    skipped = {s.path: s.reason for s in scan.skipped}
    assert not {str(p) for p in junk} & set(skipped)
    for kind, path in traps.items():
        assert str(path) in skipped, f"{kind} trap {path} not reported"
        assert TRAP_REASON[kind] in skipped[str(path)], skipped[str(path)]
        assert str(path) in warned
    utts = scan.utterances
    assert {Path(u.path) for u in utts}.isdisjoint(traps.values())
    # manifest rows list exactly the files written; IEMOCAP drops its "xxx" and full-dialog files
    if corpus not in ("iemocap",):
        assert {Path(u.path) for u in utts} == written
    assert [u.utt_id for u in utts] == sorted({u.utt_id for u in utts})  # sorted, unique
    for u in utts:
        assert u.corpus == corpus and u.speaker.startswith(f"{corpus}:")
        assert u.utt_id == f"{corpus}/{Path(u.path).relative_to(root).as_posix()}"
        assert Path(u.path).is_absolute() and u.emotion in UNIFIED
        assert u.gender in ("female", "male", None)
        x, sr = sf.read(u.path)  # header probe agrees with the decoded audio
        assert (u.sample_rate, u.duration) == (cb.RATES[corpus], pytest.approx(len(x) / sr))
    subtypes = Counter(sf.info(u.path).subtype for u in utts)
    assert {"PCM_24", "FLOAT", "PCM_16"} <= set(subtypes)  # mixed formats all read
    assert len({round(u.duration, 3) for u in utts}) > 3


@pytest.mark.parametrize("corpus", CORPORA)
def test_strict_raises_naming_the_bad_file(corpus, tmp_path):
    root = BUILDERS[corpus](tmp_path / corpus)
    traps = cb.add_traps(corpus, root)
    with pytest.raises(CorpusError) as err:
        read(corpus, root, strict=True)
    assert any(str(p) in str(err.value) for p in traps.values())


@pytest.mark.parametrize("corpus", CORPORA)
def test_missing_root_names_it(corpus, tmp_path):
    missing = tmp_path / "nowhere" / corpus
    with pytest.raises(CorpusError, match=str(missing)):
        get_reader(corpus)(missing)


@pytest.mark.parametrize("corpus", CORPORA)
def test_unknown_label_raises_unless_mapped(corpus, tmp_path):
    root = BUILDERS[corpus](tmp_path / corpus)
    path, raw = cb.add_unknown_label(corpus, root)
    # a manifest names the row (file:line), a folder corpus the file
    where = f"{root / 'manifest.csv'}:" if corpus == "manifest" else str(path)
    for strict in (False, True):  # a config error, not a bad file: raises in both modes
        with pytest.raises(CorpusProblems) as err:
            read(corpus, root, strict=strict)
        assert where in str(err.value) and repr(raw) in str(err.value)
        assert f"--data.label_map '{{\"{raw}\": " in str(err.value)  # says how to fix it
        assert len(err.value.problems) == 1
    scan = read(corpus, root, label_map={raw: "other"})
    hit = [u for u in scan.utterances if u.path == str(path)]
    assert len(hit) == 1 and hit[0].emotion == "other" and hit[0].raw_emotion == raw
    with pytest.raises(CorpusProblems, match="not one of"):
        read(corpus, root, label_map={raw: "bored-ish"})


@pytest.mark.parametrize("corpus", CORPORA)
def test_bad_duplicates_mode(corpus, tmp_path):
    with pytest.raises(ValueError, match="duplicates"):  # checked before any file is read
        read(corpus, tmp_path, duplicates="drop")


# ----------------------------------------------------------------------------- RAVDESS
def test_ravdess_fields_layouts_and_channels(tmp_path):
    root = cb.make_ravdess(tmp_path / "zip", actors=(1, 2, 18), statements=(1, 2))
    scan = read("ravdess", root)
    assert not scan.skipped
    u = by_name(scan)["03-01-05-02-01-02-02.wav"]
    assert (u.speaker, u.gender, u.emotion, u.raw_emotion, u.text_id, u.take) == \
        ("ravdess:02", "female", "angry", "05", "01", 1)
    assert u.utt_id == "ravdess/Audio_Speech_Actors_01-24/Actor_02/03-01-05-02-01-02-02.wav"
    assert by_name(scan)["03-02-06-01-02-01-01.wav"].emotion == "fearful"
    genders = {u.speaker: u.gender for u in scan.utterances}
    assert genders == {"ravdess:01": "male", "ravdess:02": "female", "ravdess:18": "female"}
    assert {Path(u.path).name.split("-")[2] for u in scan.utterances} == {f"{e:02d}" for e in range(1, 9)}
    assert {u.emotion for u in scan.utterances} == set(UNIFIED[:8])

    song = read("ravdess", root, channels=("song",)).utterances
    speech = read("ravdess", root, channels=["speech"]).utterances
    assert song and all(Path(u.path).name.split("-")[1] == "02" for u in song)
    assert "ravdess:18" not in {u.speaker for u in song}  # actor 18 has no song: nothing assumed
    assert len(song) + len(speech) == len(scan.utterances)
    with pytest.raises(ValueError, match="channels"):
        read("ravdess", root, channels=("speach",))

    flat = read("ravdess", cb.make_ravdess(tmp_path / "flat", actors=(1, 2, 18), statements=(1, 2), layout="flat"))
    strip = lambda s: sorted((Path(u.path).name, u.speaker, u.emotion, u.take, u.duration) for u in s.utterances)
    assert strip(flat) == strip(scan)
    assert flat.utterances[0].utt_id.startswith("ravdess/Actor_")


def test_ravdess_duplicate_takes(tmp_path):
    scan = read("ravdess", cb.make_ravdess(tmp_path, actors=(3,)))
    first = read("ravdess", tmp_path, duplicates="first").utterances
    assert sorted(u.take for u in scan.utterances) == [0] * (len(scan.utterances) // 2) + [1] * (len(scan.utterances) // 2)
    assert first == [u for u in scan.utterances if u.take == 0]  # repetition 02 dropped, both intensities kept
    assert {(u.raw_emotion, Path(u.path).name[9:11]) for u in first} >= {("05", "01"), ("05", "02")}


# ----------------------------------------------------------------------------- TESS
def test_tess_labels_speakers_and_case(tmp_path):
    root = cb.make_tess(tmp_path)
    cb.write_wav(root / "YAF_fear" / "YAF_Chair_FEAR.wav", cb.RATES["tess"])
    cb.write_wav(root / "OAF_Pleasant_surprise" / "oaf_bath_Pleasant_Surprise.wav", cb.RATES["tess"])
    scan = read("tess", root)
    assert not scan.skipped
    names = by_name(scan)
    assert names["OAF_back_ps.wav"].emotion == "surprised" and names["OAF_back_ps.wav"].raw_emotion == "ps"
    u = names["YAF_Chair_FEAR.wav"]
    assert (u.speaker, u.emotion, u.raw_emotion, u.text_id) == ("tess:YAF", "fearful", "fear", "chair")
    u = names["oaf_bath_Pleasant_Surprise.wav"]
    assert (u.speaker, u.emotion, u.raw_emotion, u.text_id) == ("tess:OAF", "surprised", "ps", "bath")
    assert {u.speaker for u in scan.utterances} == {"tess:OAF", "tess:YAF"}
    assert {u.gender for u in scan.utterances} == {"female"}
    assert Counter(u.emotion for u in scan.utterances)["sad"] == 4  # OAF_Sad + YAF_sad, 2 words
    assert {u.text_id for u in scan.utterances} == {"back", "bar", "chair", "bath"}


# ----------------------------------------------------------------------------- CREMA-D
def test_cremad_fields_and_demographics(tmp_path):
    root = cb.make_cremad(tmp_path, actors=(1001, 1002))
    cb.write_wav(root / "AudioWAV" / "1002_IEO_HAP_X.wav", cb.RATES["cremad"])  # the rare "X" level
    scan = read("cremad", root)
    assert not scan.skipped
    u = by_name(scan)["1002_IEO_HAP_HI.wav"]
    assert (u.speaker, u.gender, u.emotion, u.raw_emotion, u.text_id) == \
        ("cremad:1002", "female", "happy", "HAP", "IEO")
    assert "1002_IEO_HAP_X.wav" in by_name(scan)
    assert {u.speaker: u.gender for u in scan.utterances} == \
        {f"cremad:{a}": cb.cremad_sex(a).lower() for a in (1001, 1002)}
    (root / "VideoDemographics.csv").unlink()
    assert {u.gender for u in read("cremad", root).utterances} == {None}
    # the AudioWAV folder alone also reads, without genders
    assert len(read("cremad", root / "AudioWAV").utterances) == len(scan.utterances)


# ----------------------------------------------------------------------------- SAVEE
def test_savee_both_layouts(tmp_path):
    nested = read("savee", cb.make_savee(tmp_path / "a", speakers=("DC", "KL")))
    flat = read("savee", cb.make_savee(tmp_path / "b", speakers=("DC", "KL"), layout="all"))
    assert not nested.skipped and not flat.skipped
    u = next(u for u in nested.utterances if u.utt_id == "savee/AudioData/KL/su02.wav")
    assert (u.speaker, u.gender, u.emotion, u.raw_emotion, u.text_id) == ("savee:KL", "male", "surprised", "su", "su02")
    fields = lambda s: sorted((u.speaker, u.emotion, u.raw_emotion, u.text_id, u.gender) for u in s.utterances)
    assert fields(nested) == fields(flat)
    assert by_name(flat)["KL_sa01.wav"].emotion == "sad" and by_name(flat)["KL_sa01.wav"].speaker == "savee:KL"
    counts = Counter(u.raw_emotion for u in nested.utterances)
    assert counts == {"a": 4, "d": 4, "f": 4, "h": 4, "n": 8, "sa": 4, "su": 4}
    assert {u.gender for u in flat.utterances} == {"male"}


# ----------------------------------------------------------------------------- IEMOCAP
def test_iemocap_labels_vad_speakers_sessions(tmp_path):
    root = cb.make_iemocap(tmp_path, sessions=(1, 2))
    scan = read("iemocap", root)
    got = {Path(u.path).stem: u for u in scan.utterances}
    expected = {utt: (lab, vad) for n in (1, 2) for utts in cb.iemocap_default_dialogs(n).values()
                for utt, lab, vad in utts if lab != "xxx"}
    assert set(got) == set(expected)  # full-dialog WAVs and "._" files never read
    for utt, (lab, vad) in expected.items():
        u = got[utt]
        assert (u.raw_emotion, u.valence, u.arousal, u.dominance) == (lab, *vad)
    u = got["Ses02F_impro01_M000"]
    assert (u.speaker, u.gender, u.session, u.emotion, u.text_id) == \
        ("iemocap:Ses02M", "male", "Ses02", "angry", "Ses02F_impro01")
    assert got["Ses01M_script01_1_F000"].speaker == "iemocap:Ses01F"
    assert got["Ses01F_impro01_M001"].emotion == "excited"
    # "xxx" is the corpus's "no agreement": skipped with a reason, even in strict mode
    no_major = {Path(s.path).stem: s.reason for s in read("iemocap", root, strict=True).skipped}
    assert set(no_major) == {"Ses01F_impro01_F001", "Ses02F_impro01_F001"}
    assert all("no majority label" in r for r in no_major.values())

    impro = read("iemocap", root, include_scripted=False).utterances
    assert impro and all("_impro" in u.utt_id for u in impro)
    one = read("iemocap", root / "Session2").utterances
    assert {u.session for u in one} == {"Ses02"} and len(one) == len(scan.utterances) // 2


def test_iemocap_missing_labels_are_skipped(tmp_path):
    root = cb.make_iemocap(tmp_path, sessions=(3,))
    wav = root / "Session3" / "sentences" / "wav"
    unlabeled = cb.write_wav(wav / "Ses03F_impro01" / "Ses03F_impro01_M050.wav", 16000)
    orphan = cb.write_wav(wav / "Ses03M_impro07" / "Ses03M_impro07_F000.wav", 16000)
    with pytest.warns(UserWarning):
        scan = get_reader("iemocap")(root)
    reasons = {s.path: s.reason for s in scan.skipped}
    assert "no label line" in reasons[str(unlabeled)] and "Ses03F_impro01.txt" in reasons[str(unlabeled)]
    assert "no label file" in reasons[str(orphan)]
    with pytest.raises(CorpusError, match="Ses03F_impro01_M050"):
        read("iemocap", root, strict=True)


# ----------------------------------------------------------------------------- AESDD
def test_aesdd_takes_speakers_genders(tmp_path):
    root = cb.make_aesdd(tmp_path, speakers=(1, 2))
    scan = read("aesdd", root)
    assert not scan.skipped
    names = by_name(scan)
    u = names["h02 (2).wav"]
    assert (u.speaker, u.gender, u.emotion, u.raw_emotion, u.text_id, u.take) == \
        ("aesdd:2", None, "happy", "happiness", "02", 0)
    assert names["a01 (1)b.wav"].take == 1 and names["a01 (1) (2).wav"].take == 1
    assert names["a01 (1)b.wav"].text_id == "01" and names["a01 (1)b.wav"].speaker == "aesdd:1"
    assert {u.emotion for u in scan.utterances} == {"angry", "disgust", "fearful", "happy", "sad"}

    first = read("aesdd", root, duplicates="first").utterances
    assert len(first) == len(scan.utterances) - 2 and all(u.take == 0 for u in first)

    g = read("aesdd", root, speaker_genders={1: "female", "2": "male"}).utterances
    assert {u.speaker: u.gender for u in g} == {"aesdd:1": "female", "aesdd:2": "male"}
    with pytest.raises(ValueError, match="speaker_genders"):
        read("aesdd", root, speaker_genders={"1": "F"})


# ----------------------------------------------------------------------------- EmoDB
def test_emodb_fields_and_duplicate_versions(tmp_path):
    root = cb.make_emodb(tmp_path, speakers=("03", "08", "10", "16"), extra_versions=("b", "c"))
    scan = read("emodb", root)
    assert not scan.skipped
    u = by_name(scan)["08b02La.wav"]
    assert (u.speaker, u.gender, u.emotion, u.raw_emotion, u.text_id, u.take) == \
        ("emodb:08", "female", "boredom", "L", "b02", 0)
    assert {u.speaker: u.gender for u in scan.utterances} == \
        {"emodb:03": "male", "emodb:08": "female", "emodb:10": "male", "emodb:16": "female"}
    assert by_name(scan)["10a01Wc.wav"].take == 2
    first = read("emodb", root, duplicates="first").utterances
    assert len(first) == len(scan.utterances) - 8 and all(u.take == 0 for u in first)

    # a broken first version: the next take stands in for the group
    (root / "wav" / "03a01Wa.wav").write_bytes(b"")
    kept = [u for u in read("emodb", root, duplicates="first").utterances if u.text_id == "a01" and u.raw_emotion == "W"
            and u.speaker == "emodb:03"]
    assert [Path(u.path).name for u in kept] == ["03a01Wb.wav"]


def test_drop_duplicate_takes_keeps_lowest_take_per_group():
    mk = lambda i, spk, text, raw, take: Utterance(f"c/{i}", f"/{i}", "c", spk, "sad", raw, text_id=text, take=take)
    utts = [mk(0, "c:1", "t1", "a", 1), mk(1, "c:1", "t1", "a", 0), mk(2, "c:1", "t1", "a", 0),
            mk(3, "c:1", "t1", "b", 2), mk(4, "c:2", "t1", "a", 1), mk(5, "c:1", "t2", "a", 1)]
    assert [u.utt_id for u in drop_duplicate_takes(utts)] == ["c/1", "c/2", "c/3", "c/4", "c/5"]


# ----------------------------------------------------------------------------- manifest
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_manifest_fields(fmt, tmp_path):
    root = cb.make_manifest(tmp_path, fmt=fmt)
    scan = read("manifest", root)
    assert read("manifest", root / f"manifest.{fmt}").utterances == scan.utterances  # file or folder
    rows = cb.default_manifest_rows()
    assert len(scan.utterances) == len(rows)
    u = by_name(scan)["s2_sad.wav"]
    assert (u.utt_id, u.corpus, u.speaker, u.gender, u.emotion) == \
        ("manifest/audio/s2_sad.wav", "manifest", "manifest:s2", "male", "sad")
    assert (u.valence, u.arousal, u.dominance, u.session, u.text_id) == (3.5, 2.5, None, "sess1", "t0")
    assert {u.speaker: u.gender for u in scan.utterances} == \
        {"manifest:s1": "female", "manifest:s2": "male", "manifest:s3": None}


def test_manifest_corpus_column_absolute_paths_and_label_map(tmp_path):
    outside = cb.write_wav(tmp_path / "elsewhere" / "x.wav", 22050)
    rows = [{"path": str(outside), "speaker": "7", "emotion": "ang", "corpus": "mine"},
            {"path": "a.wav", "speaker": "mine:8", "emotion": "happy", "corpus": "mine", "take": "2"}]
    root = cb.make_manifest(tmp_path / "m", fmt="jsonl", rows=rows)
    with pytest.raises(CorpusProblems, match="ang"):
        read("manifest", root)
    scan = read("manifest", root, label_map={"ang": "angry"})
    a, x = scan.utterances
    assert (x.path, x.speaker, x.corpus, x.emotion, x.raw_emotion, x.sample_rate) == \
        (str(outside), "mine:7", "mine", "angry", "ang", 22050)
    assert (a.utt_id, a.speaker, a.take) == ("mine/a.wav", "mine:8", 2)


def test_manifest_missing_column_and_bad_values(tmp_path):
    m = cb.write_manifest(tmp_path / "manifest.csv", [{"path": "a.wav", "emotion": "sad"}])
    with pytest.raises(CorpusError) as err:
        read("manifest", tmp_path)
    assert str(m) in str(err.value) and "speaker" in str(err.value)
    j = cb.write_manifest(tmp_path / "j" / "manifest.jsonl", [{"path": "a.wav", "speaker": "s"}])
    with pytest.raises(CorpusError, match=f"{j}:1.*emotion"):
        read("manifest", j)
    for bad in ({"gender": "x"}, {"valence": "7"}, {"arousal": "high"}):
        row = {"path": "a.wav", "speaker": "s", "emotion": "sad", **bad}
        f = cb.write_manifest(tmp_path / "b" / "manifest.jsonl", [row])
        with pytest.raises(CorpusError, match=f"{f}:1"):
            read("manifest", f)
    cb.write_manifest(tmp_path / "manifest.jsonl", [])  # both .csv and .jsonl: ambiguous
    with pytest.raises(CorpusError, match="both"):
        read("manifest", tmp_path)


def test_manifest_round_trips_saved_utterances(tmp_path):
    scan = read("iemocap", cb.make_iemocap(tmp_path / "iemocap", sessions=(4,)))
    save_manifest(scan.utterances, tmp_path / "saved.jsonl")
    back = read("manifest", tmp_path / "saved.jsonl")
    assert back.utterances == scan.utterances
    assert json.loads((tmp_path / "saved.jsonl").read_text().splitlines()[0])["corpus"] == "iemocap"


def test_synthetic_generation_clears_what_a_killed_run_left(tmp_path):
    from lightning_ser.corpora.synthetic import SyntheticConfig, generate

    root = tmp_path / "synthetic"
    stale = tmp_path / "synthetic.partial-999999"  # the temporary folder of a killed run
    (stale / "spk01").mkdir(parents=True)
    (stale / "spk01" / "half.wav").write_bytes(b"RIFF")
    cfg = SyntheticConfig(speakers=2, emotions=("neutral", "sad"), utterances_per_emotion=1)
    manifest = generate(root, cfg, num_workers=2)  # spawned workers that die with this process
    assert not stale.exists() and not list(tmp_path.glob("synthetic.partial-*"))
    assert len(manifest.read_text().splitlines()) == 4
    assert len(list(root.rglob("*.wav"))) == 4


def test_manifest_reports_every_problem_in_one_pass(tmp_path):
    rows = [{"path": "a.wav", "speaker": "s1", "emotion": "sad"},
            {"path": "b.wav", "speaker": "s1", "emotion": "bored"},          # line 3: unknown label
            {"path": "c.wav", "speaker": "s2", "emotion": "bored"},          # line 4: the same label
            {"path": "d.wav", "speaker": "s2", "emotion": "sad", "gender": "x"},     # line 5
            {"path": "e.wav", "speaker": "s2", "emotion": "sad", "valence": "9"},    # line 6
            {"path": "a.wav", "speaker": "s3", "emotion": "happy"},        # line 7: a.wav again
            {"path": "f.wav", "speaker": "s3", "emotion": "happy"}]
    root = cb.make_manifest(tmp_path / "m", rows=rows)
    (root / "f.wav").write_bytes(b"")  # a bad file is skipped, not a problem
    m = root / "manifest.csv"
    with pytest.warns(UserWarning, match="f.wav"), pytest.raises(CorpusProblems) as err:
        get_reader("manifest")(root)
    assert [p.path for p in err.value.problems] == [f"{m}:{n}" for n in (3, 4, 5, 6, 7)]
    text = str(err.value)
    assert text.startswith(f"manifest {m}: 5 problem(s), nothing decoded")
    assert f"unknown manifest emotion label 'bored'" in text and f"2 files ({m}:3, {m}:4)" in text
    assert f"{m}:5: gender 'x'" in text and f"{m}:6: valence=9.0 is outside" in text
    assert f"{m}:7: {root / 'a.wav'} is listed again (first on line 2)" in text
