"""Corpus readers: fake trees of tiny real audio files in every layout, plus the real data."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_model.corpora import (AUDIO_EXTENSIONS, READERS, Record, ScanResult, Skip, ased,
                               cremad, emodb, parse, ravdess, savee, scan, tess, turevdb)
from ser_model.labels import EMOTIONS

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SR = 16000
_SINE = (0.1 * np.sin(2 * np.pi * 440 * np.arange(int(0.05 * SR)) / SR)).astype(np.float32)


def write_audio(path: Path) -> Path:
    """A 0.05 s sine; FLAC for .flac, WAV bytes for every other extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _SINE, SR, format="FLAC" if path.suffix.lower() == ".flac" else "WAV")
    return path


def make_tree(root: Path, names: list[str]) -> Path:
    for name in names:
        write_audio(root / name)
    return root


def summary(result: ScanResult) -> dict[str, tuple]:
    """File name -> (corpus, speaker, gender, label) of every record."""
    return {r.path.name: (r.corpus, r.speaker, r.gender, r.label) for r in result.records}


# One list per corpus: (relative path, expected (corpus, speaker, gender, label) or a Skip).
RAVDESS = [
    ("Actor_01/03-01-02-02-01-01-01.wav", ("ravdess", "ravdess-01", "male", "neutral")),
    ("Actor_02/03-02-08-01-02-02-02.flac", ("ravdess", "ravdess-02", "female", "surprised")),
    ("loose/03-01-05-01-01-01-03.wav", ("ravdess", "ravdess-03", "male", "angry")),
    ("Actor_01/03-01-09-01-01-01-01.wav", Skip("ravdess", "unknown emotion code")),
    ("Actor_01/03-01-01-02-01-01-01.wav", Skip("ravdess", "malformed name")),  # strong neutral
    ("Actor_01/03-01-03-01-01-01.wav", Skip("ravdess", "malformed name")),  # six fields
    ("loose/03-01-03-01-01-01-25.wav", Skip("ravdess", "malformed name")),  # actor 25
    ("Actor_05/03-01-03-01-01-01-06.wav", Skip("ravdess", "file name and folder disagree")),
]
TESS = [
    ("OAF_fear/OAF_back_fear.wav", ("tess", "tess-OAF", "female", "fearful")),
    ("YAF_pleasant_surprise/YAF_beg_ps.flac", ("tess", "tess-YAF", "female", "surprised")),
    ("OAF_Fear/OAF_dog_Fear.WAV", ("tess", "tess-OAF", "female", "fearful")),
    ("YAF_pleasant_surprised/YAF_chair_pleasant_surprised.wav",
     ("tess", "tess-YAF", "female", "surprised")),
    ("OAF_neutral/OA_bite_neutral.wav", ("tess", "tess-OAF", "female", "neutral")),
    ("YAF_Sad/YAF_youth_sad.mp3", ("tess", "tess-YAF", "female", "sad")),
    ("OAF_angry/OAF_back_happy.wav", Skip("tess", "file name and folder disagree")),
    ("YAF_angry/OAF_bar_angry.wav", Skip("tess", "file name and folder disagree")),
    ("OAF_calm/OAF_back_calm.wav", Skip("tess", "unknown emotion code")),
]
CREMAD = [
    ("AudioWAV/1001_DFA_ANG_XX.wav", ("cremad", "cremad-1001", "male", "angry")),
    ("AudioWAV/1002_IEO_HAP_HI.flac", ("cremad", "cremad-1002", "female", "happy")),
    ("AudioWAV/1091_ITH_SAD_X.wav", ("cremad", "cremad-1091", None, "sad")),  # not in the csv
    ("AudioWAV/1001_TIE_fea_lo.wav", ("cremad", "cremad-1001", "male", "fearful")),
    ("AudioWAV/1003_DFA_NEU_MD.wav", ("cremad", "cremad-1003", "female", "neutral")),
    ("AudioWAV/1003_DFA_DIS_XX.wav", ("cremad", "cremad-1003", "female", "disgust")),
    ("AudioWAV/1001_DFA_BOR_XX.wav", Skip("cremad", "unknown emotion code")),
    ("AudioWAV/0999_DFA_ANG_XX.wav", Skip("cremad", "malformed name")),
    ("AudioWAV/1001_DFA_ANG_QQ.wav", Skip("cremad", "malformed name")),
]
SAVEE = [
    ("AudioData/DC/a01.wav", ("savee", "savee-DC", "male", "angry")),
    ("AudioData/JE/sa02.flac", ("savee", "savee-JE", "male", "sad")),
    ("AudioData/KL/su03.wav", ("savee", "savee-KL", "male", "surprised")),
    ("JK/n30.wav", ("savee", "savee-JK", "male", "neutral")),
    ("flat/DC_d05.wav", ("savee", "savee-DC", "male", "disgust")),
    ("flat/KL_f01.flac", ("savee", "savee-KL", "male", "fearful")),
    ("flat/JE_h11.wav", ("savee", "savee-JE", "male", "happy")),
    ("AudioData/DC/s01.wav", Skip("savee", "unknown emotion code")),
    ("flat/JK_x02.wav", Skip("savee", "unknown emotion code")),
]
EMODB = [
    ("wav/03a01Fa.wav", ("emodb", "emodb-03", "male", "happy")),
    ("wav/08b10Wb.flac", ("emodb", "emodb-08", "female", "angry")),
    ("wav/16a07Ec.wav", ("emodb", "emodb-16", "female", "disgust")),
    ("wav/10a02Ab.wav", ("emodb", "emodb-10", "male", "fearful")),
    ("wav/11b03Tc.wav", ("emodb", "emodb-11", "male", "sad")),
    ("wav/14a05Na.wav", ("emodb", "emodb-14", "female", "neutral")),
    ("wav/09a01La.wav", Skip("emodb", "boredom has no counterpart")),
    ("wav/07a01Fa.wav", Skip("emodb", "malformed name")),  # no speaker 07
    ("wav/03b11Fa.wav", Skip("emodb", "malformed name")),  # no text b11
    ("wav/03a01Xa.wav", Skip("emodb", "unknown emotion code")),
]
ASED = [
    ("01Neutral/n1-01-01-01-01.wav", ("ased", "ased-01", "female", "neutral")),
    ("02Fearful/f2-02-02-02-02.flac", ("ased", "ased-02", "male", "fearful")),
    ("03Happy/h3-03-01-01-03.wav", ("ased", "ased-03", "female", "happy")),
    ("04Sad/S4-04-02-01-29.wav", ("ased", "ased-29", "female", "sad")),
    ("05Angry/a5-03-01-02-50.flac", ("ased", "ased-50", "male", "angry")),
    ("loose/s4-05-01-02-65.wav", ("ased", "ased-65", "male", "sad")),
    ("03Happy/a5-01-01-02-50.wav", Skip("ased", "file name and folder disagree")),
    ("01Neutral/x1-01-01-01-01.wav", Skip("ased", "unknown emotion code")),
    ("01Neutral/n5-01-01-01-01.wav", Skip("ased", "unknown emotion code")),
    ("01Neutral/n1-01-01-03-01.wav", Skip("ased", "malformed name")),  # gender 03
]
TUREVDB = [
    ("Angry/1157_kz_acik.ogg", ("turevdb", "turevdb-1157", None, "angry")),
    ("Calm/1234_sk_bugu.ogg", ("turevdb", "turevdb-1234", None, "neutral")),  # calm -> neutral
    ("Sound Source/Happy/1358_mt_cay.wav", ("turevdb", "turevdb-1358", None, "happy")),  # the download
    ("Sad/7895_hl_ogul1.ogg", ("turevdb", "turevdb-7895", None, "sad")),  # the one word with a digit
    ("loose/6783_HL_Beste.flac", ("turevdb", "turevdb-6783", None, "sad")),  # no folder, any case
    ("Sad/1984_kz_algi.ogg", Skip("turevdb", "file name and folder disagree")),
    ("Calm/1984_sk_algi.ogg", ("turevdb", "turevdb-1984", None, "neutral")),
    ("Angry/1157_xx_acik.ogg", Skip("turevdb", "unknown emotion code")),
    ("Angry/1001_kz_acik.ogg", Skip("turevdb", "malformed name")),  # no speaker 1001
]
CORPORA = {"ravdess": RAVDESS, "tess": TESS, "cremad": CREMAD, "savee": SAVEE, "emodb": EMODB,
           "ased": ASED, "turevdb": TUREVDB}
ALL = [case for cases in CORPORA.values() for case in cases]
UNRELATED = ["misc/hello.wav", "misc/recording_2021.flac", "Actor_01/notes.ogg"]
NOT_AUDIO = ["README.txt", "misc/labels.csv", "Actor_01/.DS_Store", "misc/info.json"]


def write_demographics(path: Path, rows: dict[str, str]) -> None:
    lines = ["ActorID,Age,Sex,Race,Ethnicity"]
    lines += [f"{actor},51,{sex},Caucasian,Not Hispanic" for actor, sex in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def expected_counts(cases) -> tuple[dict, Counter]:
    records = {Path(p).name: want for p, want in cases if not isinstance(want, Skip)}
    skipped = Counter((w.corpus, w.reason) for _, w in cases if isinstance(w, Skip))
    return records, skipped


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_each_layout_alone(tmp_path, corpus):
    cases = CORPORA[corpus]
    make_tree(tmp_path, [p for p, _ in cases])
    if corpus == "cremad":
        write_demographics(tmp_path / "VideoDemographics.csv",
                           {"1001": "Male", "1002": "Female", "1003": "Female"})
    result = scan(tmp_path)
    records, skipped = expected_counts(cases)
    assert summary(result) == records
    assert result.skipped == skipped
    assert result.n_skipped == len(cases) - len(records)
    assert list(result.by_corpus()) == [corpus]


@pytest.mark.parametrize("relpath,want", ALL, ids=[p for p, _ in ALL])
def test_exactly_one_reader_claims_each_file(relpath, want):
    path = Path("/data") / relpath
    claims = [r.parse(path) for r in READERS]
    claimed = [c for c in claims if c is not None]
    assert len(claimed) == 1, claimed
    got = claimed[0]
    if isinstance(want, Skip):
        assert got == want
    else:
        assert (got.corpus, got.speaker, got.gender if got.corpus != "cremad" else want[2],
                got.label) == want


@pytest.mark.parametrize("name", ["hello.wav", "2021-05-03.wav", "take_01.wav", "a01.wav",
                                  "OAF_back.wav", "1001_DFA.wav", "03a01F.wav", "n1-01-01.wav",
                                  "1157_kz.wav", "1157_kz_acik_2.wav", "115_kz_acik.wav"])
def test_no_reader_claims_unrelated_names(name):
    assert all(r.parse(Path("/data/misc") / name) is None for r in READERS)
    assert parse(Path("/data/misc") / name) is None


def test_extra_fields():
    rec = ravdess.parse(Path("Actor_01/03-02-02-02-01-02-01.wav"))
    assert rec.extra == {"emotion": "calm", "modality": "audio", "channel": "song",
                         "intensity": "strong", "statement": "01", "repetition": "02"}
    assert tess.parse(Path("OA_bite_neutral.wav")).extra == {"emotion": "neutral",
                                                             "word": "bite", "age": 64}
    assert tess.parse(Path("YAF_beg_ps.wav")).extra["age"] == 26
    assert cremad.parse(Path("1001_DFA_ANG_HI.wav")).extra == {"emotion": "ANG",
                                                               "sentence": "DFA", "level": "high"}
    assert savee.parse(Path("JE/su12.wav")).extra == {"emotion": "su", "sentence": "12"}
    assert emodb.parse(Path("03a01Fa.wav")).extra == {"emotion": "F", "text": "a01",
                                                      "version": "a"}
    assert ased.parse(Path("S4-04-02-01-29.wav")).extra == {"emotion": "s4", "sentence": "04",
                                                            "repetition": "02"}
    assert turevdb.parse(Path("Sad/7895_hl_ogul1.ogg")).extra == {"emotion": "hl", "word": "ogul"}


def test_cremad_gender_needs_demographics_under_the_root(tmp_path):
    names = ["CREMA-D/AudioWAV/1001_DFA_ANG_XX.wav", "CREMA-D/AudioWAV/1002_IEO_HAP_HI.flac"]
    make_tree(tmp_path, names)
    assert {r.gender for r in scan(tmp_path).records} == {None}
    write_demographics(tmp_path / "CREMA-D" / "VideoDemographics.csv",
                       {"1001": "Male", "1002": "Female"})
    assert [r.gender for r in scan(tmp_path).records] == ["male", "female"]
    # Scanning only the audio folder does not reach the csv beside it.
    assert {r.gender for r in scan(tmp_path / "CREMA-D" / "AudioWAV").records} == {None}
    assert cremad.read_demographics(tmp_path / "CREMA-D" / "VideoDemographics.csv") == {
        "1001": "male", "1002": "female"}


def test_mixed_tree(tmp_path):
    make_tree(tmp_path, [p for p, _ in ALL] + UNRELATED)
    for name in NOT_AUDIO:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("not audio")
    write_audio(tmp_path / "AudioData" / "DC" / "._a02.wav")  # macOS resource fork: hidden
    write_audio(tmp_path / "__MACOSX" / "DC" / "a03.wav")
    write_demographics(tmp_path / "VideoDemographics.csv",
                       {"1001": "Male", "1002": "Female", "1003": "Female"})
    result = scan(tmp_path)

    records, skipped = expected_counts(ALL)
    skipped["unknown", "unrecognised file name"] = len(UNRELATED)
    assert summary(result) == records
    assert result.skipped == skipped
    assert result.n_skipped == sum(skipped.values())
    assert [r.path for r in result.records] == sorted(r.path for r in result.records)
    assert all(r.path.is_file() and r.path.is_relative_to(tmp_path) for r in result.records)
    groups = result.by_corpus()
    assert list(groups) == sorted(CORPORA)
    assert {c: len(rs) for c, rs in groups.items()} == Counter(w[0] for w in records.values())
    assert all(r.label in EMOTIONS for r in result.records)


def test_scan_several_roots_and_single_files(tmp_path):
    make_tree(tmp_path / "a", ["Actor_01/03-01-03-01-01-01-01.wav", "hello.wav"])
    make_tree(tmp_path / "b", ["wav/03a01Fa.flac", "wav/09a01La.wav"])
    single = write_audio(tmp_path / "c" / "OAF_back_fear.wav")
    result = scan(tmp_path / "b", str(tmp_path / "a"), single)
    assert [r.speaker for r in result.records] == ["ravdess-01", "emodb-03", "tess-OAF"]
    assert result.skipped == Counter({("unknown", "unrecognised file name"): 1,
                                      ("emodb", "boredom has no counterpart"): 1})
    # Overlapping roots count each file once.
    again = scan(tmp_path, tmp_path / "a", single)
    assert len(again.records) == 3 and again.n_skipped == 2
    assert scan().records == [] and scan().n_skipped == 0
    with pytest.raises(FileNotFoundError):
        scan(tmp_path / "missing")


def test_audio_extensions_are_case_insensitive(tmp_path):
    make_tree(tmp_path, ["Actor_01/03-01-03-01-01-01-01.WAV",
                         "Actor_01/03-01-03-01-01-02-01.Flac"])
    for ext in AUDIO_EXTENSIONS:  # contents do not matter to the readers, only names
        write_audio(tmp_path / f"wav/03a01Fa{ext.upper()}")
    result = scan(tmp_path)
    assert len(result.records) == 2 + len(AUDIO_EXTENSIONS)
    assert result.n_skipped == 0


def test_speaker_gender_follows_the_majority(tmp_path):
    make_tree(tmp_path, ["04Sad/s4-01-01-01-09.wav", "04Sad/s4-01-02-02-09.wav",
                         "03Happy/h3-01-01-01-09.wav", "03Happy/h3-01-02-01-09.wav",
                         "03Happy/h3-01-01-01-30.wav", "03Happy/h3-01-01-02-30.wav"])
    result = scan(tmp_path)
    genders = {r.path.name: (r.gender, r.extra.get("gender_in_name")) for r in result.records}
    assert genders == {"s4-01-01-01-09.wav": ("female", None),
                       "s4-01-02-02-09.wav": ("female", "male"),
                       "h3-01-01-01-09.wav": ("female", None),
                       "h3-01-02-01-09.wav": ("female", None),
                       "h3-01-01-01-30.wav": (None, "female"),  # a tie: unknown
                       "h3-01-01-02-30.wav": (None, "male")}


def test_record_checks_and_equality():
    with pytest.raises(ValueError):
        Record(Path("x.wav"), "tess", "tess-OAF", "female", "calm")
    with pytest.raises(ValueError):
        Record(Path("x.wav"), "tess", "tess-OAF", "f", "happy")
    a = Record(Path("x.wav"), "tess", "tess-OAF", "female", "happy", {"word": "back"})
    b = Record(Path("x.wav"), "tess", "tess-OAF", "female", "happy", {"word": "other"})
    assert a == b and hash(a) == hash(b)
    assert a != Record(Path("x.wav"), "tess", "tess-OAF", "female", "sad")


@pytest.mark.realdata
def test_real_datasets():
    if not DATASETS.is_dir():
        pytest.skip(f"{DATASETS} is absent")
    result = scan(DATASETS)
    groups = result.by_corpus()
    counts = {c: (len(rs), len({r.speaker for r in rs})) for c, rs in groups.items()}
    assert counts["ravdess"] == (1200, 20)
    assert counts["tess"] == (2798, 2)
    assert counts["ased"] == (2470, 65)
    assert counts["turevdb"] == (1735, 6)
    assert Counter(r.label for r in groups["turevdb"]) == {"angry": 487, "neutral": 408, "happy": 357, "sad": 483}
    assert {r.speaker for r in groups["turevdb"] if r.label in ("neutral", "happy")} == {
        f"turevdb-{s}" for s in ("1234", "1358", "1984", "6783", "7895")}  # 1157 has no Calm or Happy
    assert result.skipped == Counter()
    assert {r.label for r in result.records} <= set(EMOTIONS)
    assert {r.label for r in groups["ravdess"]} == set(EMOTIONS)
    assert sum(r.extra["emotion"] == "calm" for r in groups["ravdess"]) == 160
    assert all(r.gender in ("male", "female") for r in result.records if r.corpus != "turevdb")
    assert {r.gender for r in groups["turevdb"]} == {None}  # the corpus does not give it
    speaker_genders = {}
    for r in result.records:
        assert speaker_genders.setdefault(r.speaker, r.gender) == r.gender
    for r in result.records:
        assert sum(reader.parse(r.path) is not None for reader in READERS) == 1, r.path
