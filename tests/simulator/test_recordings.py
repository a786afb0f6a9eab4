"""GetRecodeFile: a download address for a bill's recording."""

from __future__ import annotations

from urllib.parse import quote

from tests.simulator.conftest import GET_RECORD_FILE, StartSimulator


async def test_a_known_recording_gets_a_download_address(start: StartSimulator) -> None:
    api = await start(backlog=200)
    await api.login()
    bills = (await api.get_bill())["bills"]
    filename = next(bill["recordfilename"] for bill in bills if bill["recordfilename"])

    answer = await api.call({"service": GET_RECORD_FILE, "token": api.token, "filename": filename})

    assert answer["ret"] == 200
    url = answer["data"]["result"]["url"]
    assert url == f"{api.simulator.url}recordings/{quote(filename)}"
    async with api.session.get(url) as response:
        assert response.status == 200
        assert response.content_type == "audio/wav"
        assert (await response.read())[:4] == b"RIFF"


async def test_only_answered_calls_have_recordings(start: StartSimulator) -> None:
    api = await start(backlog=300)
    await api.login()
    bills = (await api.get_bill())["bills"]
    for bill in bills:
        assert bool(bill["recordfilename"]) == (bill["answertime"] is not None)
        assert bool(bill["downloadip"]) == (bill["answertime"] is not None)


async def test_an_unknown_recording_is_400_naming_filename(start: StartSimulator) -> None:
    api = await start(backlog=50)
    await api.login()
    bills = (await api.get_bill())["bills"]
    real = next(bill["recordfilename"] for bill in bills if bill["recordfilename"])
    # The right shape, but another record's id; and names of no shape at all.
    forged = real.rsplit("-", 1)[0] + "-999999.wav"
    for filename in (forged, "nothing.wav", "../../etc/passwd"):
        fields = {"service": GET_RECORD_FILE, "token": api.token, "filename": filename}
        answer = await api.call(fields)
        assert answer["ret"] == 400
        assert "filename" in answer["msg"]
    async with api.session.get(f"{api.simulator.url}recordings/nothing.wav") as response:
        assert response.status == 404


async def test_an_injected_bill_recording_is_known(start: StartSimulator) -> None:
    api = await start()
    await api.login()
    await api.admin("POST", "inject", {"recordfilename": "custom/recording 1.mp3"})
    fields = {"service": GET_RECORD_FILE, "token": api.token, "filename": "custom/recording 1.mp3"}
    answer = await api.call(fields)
    assert answer["ret"] == 200
    assert answer["data"]["result"]["url"].endswith("recordings/custom/recording%201.mp3")


async def test_getrecodefile_needs_a_valid_token(start: StartSimulator) -> None:
    api = await start()
    fields = {"service": GET_RECORD_FILE, "token": "f" * 32, "filename": "x.wav"}
    assert (await api.call(fields))["ret"] == 600
