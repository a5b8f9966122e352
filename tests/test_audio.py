import av
import numpy as np
import pytest
from conftest import sine, write_audio

from tagger.audio.chunks import chunk_starts, cut_chunks
from tagger.audio.decode import decode
from tagger.errors import DecodeError


def _peak_hz(x, sr=16000):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


@pytest.mark.parametrize("name,kw", [("a.wav", {}), ("a.flac", {}), ("a.ogg", {"subtype": "VORBIS"}),
                                     ("a.opus", {"format": "OGG", "subtype": "OPUS"}),
                                     ("a.mp3", {"format": "MP3"})])
def test_soundfile_formats_decode_to_16k_mono(tmp_path, name, kw):
    sr = 48000 if name.endswith(".opus") else 44100
    path = write_audio(tmp_path / name, sine(440.0, 4.0, sr, channels=2), sr, **kw)
    x = decode(path, 16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 64000) < 2000  # codecs add a little priming/padding
    assert abs(_peak_hz(x[4000:60000]) - 440.0) < 3.0


def test_m4a_decodes_through_pyav(tmp_path):
    path = tmp_path / "a.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        stream.layout = "stereo"
        samples = sine(880.0, 3.0, 44100, channels=2).T.copy()
        for i in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, i:i + 1024], format="fltp", layout="stereo")
            frame.rate = 44100
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    x = decode(path, 16000)
    assert abs(len(x) - 48000) < 2000
    assert abs(_peak_hz(x[2000:46000]) - 880.0) < 5.0


def test_stereo_is_averaged(tmp_path):
    left = sine(300.0, 1.0)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    x = decode(write_audio(tmp_path / "s.wav", stereo, subtype="FLOAT"), 16000)
    assert np.allclose(x, left / 2, atol=1e-6)


def test_bad_inputs_name_the_file(tmp_path):
    cases = {tmp_path / "missing.mp3": "no such file", tmp_path: "is a directory"}
    (tmp_path / "empty.mp3").write_bytes(b"")
    cases[tmp_path / "empty.mp3"] = "empty file"
    (tmp_path / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    cases[tmp_path / "noise.mp3"] = "cannot decode audio.*soundfile: .*pyav: "
    for path, message in cases.items():
        with pytest.raises(DecodeError, match=message) as err:
            decode(path, 16000)
        assert str(path) in str(err.value)


def test_chunk_rules():
    assert chunk_starts(10, 48000) == [0]
    assert chunk_starts(96000, 48000) == [0, 48000]
    assert chunk_starts(96000 + 23999, 48000) == [0, 48000]  # tail under half a chunk: dropped
    assert chunk_starts(96000 + 24000, 48000) == [0, 48000, 72000]  # else one chunk at the end
    assert chunk_starts(480000, 48000, 4) == [0, 144000, 288000, 432000]
    assert chunk_starts(96000, 48000, 8) == [0, 48000]  # never more than 'all'


def test_short_tracks_are_repeated_to_one_chunk():
    x = np.arange(1000, dtype=np.float32)
    chunks = cut_chunks(x, 48000)
    assert chunks.shape == (1, 48000)
    assert np.array_equal(chunks[0, 1000:2000], x)


def test_streamed_chunks_equal_chunks_cut_from_the_whole_track(tmp_path, monkeypatch):
    from conftest import music_like, write_m4a

    import tagger.audio.decode as audio
    from tagger.audio.decode import ChunkReader

    flac = write_audio(tmp_path / "a.flac", music_like(52.6, 44100, 1), 44100)
    m4a = write_m4a(tmp_path / "b.m4a", music_like(40.0, 44100, 2))
    for path, n in ((flac, None), (m4a, None), (m4a, 4)):  # streamed through the two-chunk buffer / held whole
        whole = decode(path, 16000)
        reader = ChunkReader(path, 16000, 48000, n, block_chunks=5)
        got = np.concatenate(list(reader))
        assert np.array_equal(got, cut_chunks(whole, 48000, n)), (path.name, n)
        assert reader.chunks == len(got) and abs(reader.duration_s - len(whole) / 16000) < 1e-9
    monkeypatch.setattr(audio, "MAX_BUFFER_S", 10.0)  # too long to hold: counted, then read again
    got = np.concatenate(list(ChunkReader(m4a, 16000, 48000, 4)))
    assert np.array_equal(got, cut_chunks(decode(m4a, 16000), 48000, 4))


def test_loud_floats_are_clipped_and_nan_fails_naming_the_time(tmp_path):
    x = sine(220.0, 4.0, 44100) * 50.0
    loud = decode(write_audio(tmp_path / "loud.wav", x, 44100, subtype="FLOAT"), 16000)
    as_played = decode(write_audio(tmp_path / "clipped.wav", np.clip(x, -1, 1), 44100, subtype="FLOAT"), 16000)
    assert np.array_equal(loud, as_played)  # clipped before resampling (which may ring past ±1)
    x[2 * 44100] = np.inf
    with pytest.raises(DecodeError, match=r"non-finite samples \(NaN or infinity\) near 2.0 s"):
        decode(write_audio(tmp_path / "inf.wav", x, 44100, subtype="FLOAT"), 16000)
