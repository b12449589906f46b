"""The pure helpers of the benchmark harness (bench/run.py and its harness_* modules):
SIPp's stat file, /proc."""

from __future__ import annotations

from types import ModuleType

import pytest
from helpers import load_script


@pytest.fixture(scope="module")
def parse() -> ModuleType:
    return load_script("harness_parse")


@pytest.fixture(scope="module")
def targets() -> ModuleType:
    return load_script("harness_targets")


@pytest.fixture(scope="module")
def sipp() -> ModuleType:
    return load_script("harness_sipp")


@pytest.fixture(scope="module")
def report() -> ModuleType:
    return load_script("harness_report")


@pytest.fixture(scope="module")
def run() -> ModuleType:
    return load_script("run")


# SIPp 3.6.1 -trace_stat: a header, then one row a period and a last one at exit; times
# are date<TAB>time<TAB>epoch; the row ends with a ';'.
STAT = (
    "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;"
    "SuccessfulCall(C);FailedCall(C);FailedUnexpectedMessage(C);CallLength(C);\n"
    "2026-11-26\t16:47:44.658975\t1795711664.658975;2026-11-26\t16:47:44.658975\t"
    "1795711664.658975;2026-11-26\t16:47:45.658975\t1795711665.658975;00:00:01;00:00:01;"
    "100000;5000;0;0;00:00:00:001000;\n"
    "2026-11-26\t16:47:44.658975\t1795711664.658975;2026-11-26\t16:47:46.972666\t"
    "1795711666.972666;2026-11-26\t16:47:46.976903\t1795711666.976903;00:00:00;00:00:02;"
    "100000;20000;3;2;00:00:00:018000;\n"
)


def test_stat_csv_last_row_by_name(parse: ModuleType, sipp: ModuleType) -> None:
    stat = parse.parse_stat_csv(STAT)
    assert parse.stat_int(stat, "SuccessfulCall(C)") == 20000
    assert parse.stat_int(stat, "FailedCall(C)") == 3
    assert parse.stat_int(stat, "FailedUnexpectedMessage(C)") == 2
    assert parse.stat_int(stat, "NoSuchColumn") == 0
    elapsed = parse.stat_epoch(stat["CurrentTime"]) - parse.stat_epoch(stat["StartTime"])
    assert elapsed == pytest.approx(2.317928, abs=1e-6)
    assert sipp._call_length_ms(stat["CallLength(C)"]) == pytest.approx(18.0)
    assert parse.parse_stat_csv("") == {}
    assert parse.parse_stat_csv(STAT.splitlines()[0]) == {}


def _stat_rows(per_second: list[int]) -> str:
    """A -trace_stat file with -fd 1: one row a second, cumulative and periodic counts."""
    head = "StartTime;CurrentTime;SuccessfulCall(P);SuccessfulCall(C);\n"
    rows, total = [], 0
    for second, done in enumerate(per_second, start=1):
        total += done
        rows.append(f"d\tt\t1000.0;d\tt\t{1000.0 + second};{done};{total};\n")
    return head + "".join(rows)


def test_rates_before_and_from_a_second_on(parse: ModuleType) -> None:
    # A warm-up at 30 k/s, then 20 k/s: the rate from the 3rd second is the latter's.
    rows = parse.parse_stat_rows(_stat_rows([30_000, 30_000, 30_000, 20_000, 20_000, 20_000]))
    assert len(rows) == 6
    assert parse.per_period(rows, "SuccessfulCall(P)") == [30_000] * 3 + [20_000] * 3
    assert parse.rate_between(rows, 3.0) == pytest.approx(20_000)
    assert parse.rate_between(rows, 0.0, 3.0) == pytest.approx(30_000)  # from the start
    assert parse.rate_between(rows, 0.0) == pytest.approx(25_000)
    assert parse.rate_between(rows, 6.0) is None  # only the last row is that late
    assert parse.rate_between(rows, 60.0) is None
    assert parse.rate_between([], 0.0) is None
    assert parse.parse_stat_rows("") == []


def test_udp_drops_of_a_port(parse: ModuleType) -> None:
    udp = (
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode ref pointer drops\n"
        " 2079: 0100007F:1770 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
        "        0 38497 2 0000000038b2ca2d 12\n"
        " 2081: 00000000:1770 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
        "        0 38498 2 00000000df771959 30\n"
        " 2082: 0100007F:1772 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
        "        0 38499 2 00000000df771959 7\n"
    )
    assert parse.parse_udp_drops(udp, 0x1770) == 42  # both sockets on port 6000
    assert parse.parse_udp_drops(udp, 0x1772) == 7
    assert parse.parse_udp_drops(udp, 5060) == 0
    snmp = "Udp: InDatagrams NoPorts RcvbufErrors\nUdp: 100 2 9\n"
    assert parse.parse_netstat(snmp)["UdpRcvbufErrors"] == 9


def test_listening_lines(parse: ModuleType) -> None:
    out = "listening udp 127.0.0.1:40123\nlistening tcp 127.0.0.1:40123\nadmin http://x\n"
    assert parse.parse_listening(out) == {"udp": 40123, "tcp": 40123}
    assert parse.parse_listening("listening udp [::1]:5070\n") == {"udp": 5070}
    assert parse.parse_listening("starting\n") == {}


def test_proc_stat_and_status(parse: ModuleType) -> None:
    # The command name may hold spaces and parentheses: fields count from the last ')'.
    line = "4242 (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0\n"
    assert parse.parse_proc_stat(line) == (17, 250, 31)
    status = "Name:\tpython\nVmPeak:\t  50000 kB\nVmHWM:\t   47576 kB\nVmRSS:\t 40000 kB\n"
    assert parse.parse_vmhwm(status) == 47576
    assert parse.parse_vmhwm("Name:\tzombie\n") == 0


def test_open_loop_search(sipp: ModuleType) -> None:
    assert sipp.next_rate(None, None, 10_000) == pytest.approx(8_500)
    assert sipp.next_rate(8_500, None, 10_000) == pytest.approx(11_900)  # clean: up
    assert sipp.next_rate(None, 8_500, 10_000) == pytest.approx(5_100)  # not: down
    assert sipp.next_rate(8_500, 11_900, 10_000) == pytest.approx(10_200)  # bisect


def _fake_runs(sipp: ModuleType, capacity: int, disturbed: set[str]) -> tuple[object, list]:
    """A ``run`` for ``sipp.search``: clean up to ``capacity`` calls/s, except the runs
    labelled in ``disturbed``; it notes each (rate, label, repeat) it is asked for."""
    asked: list[tuple[int, str, bool]] = []

    def run(rate: int, label: str, repeat: bool) -> object:
        asked.append((rate, label, repeat))
        clean = rate <= capacity and label not in disturbed
        return sipp.ClientRun(
            kind="open",
            rate=rate,
            calls=rate * 3,
            exit_code=0,
            elapsed=3.0,
            successful=rate * 3,
            failed=0 if clean else 1,
            unexpected=0,
            timeouts=0,
            retransmissions=0,
            dead_call_msgs=0,
            out_of_call_msgs=0,
            call_length_ms=None,
            rate_achieved=rate,
            target_cpu=1.0,
            client_cpu=1.0,
            clean=clean,
        )

    return run, asked


def test_search_without_retries(sipp: ModuleType) -> None:
    run, asked = _fake_runs(sipp, 9_000, set())
    runs: list[object] = []
    assert sipp.search(10_000, 4, 0, run, runs) == (8_500, 9_350)
    assert asked == [
        (8_500, "open1", False),
        (11_900, "open2", False),
        (10_200, "open3", False),
        (9_350, "open4", False),
    ]
    assert len(runs) == 4
    # One disturbed first run, no retry: the search stays below it (9,000 is clean).
    run, asked = _fake_runs(sipp, 9_000, {"open1"})
    assert sipp.search(10_000, 4, 0, run, []) == (7_650, 8_500)
    assert [rate for rate, _, _ in asked] == [8_500, 5_100, 6_800, 7_650]
    assert sipp.search(None, 4, 1, run, []) == (None, None)  # no ceiling: nothing to try


def test_search_repeats_a_failed_run_within_the_budget(sipp: ModuleType) -> None:
    # The first run is disturbed: its repeat at the same rate decides, and is clean.
    run, asked = _fake_runs(sipp, 9_000, {"open1"})
    runs: list[object] = []
    assert sipp.search(10_000, 4, 1, run, runs) == (8_500, 9_350)
    assert asked == [
        (8_500, "open1", False),
        (8_500, "open1b", True),
        (11_900, "open2", False),
        (10_200, "open3", False),
        (9_350, "open4", False),
    ]
    assert [r.clean for r in runs] == [False, True, False, False, False]
    # A real failure is repeated while the budget lasts, then taken as it is.
    run, asked = _fake_runs(sipp, 9_000, set())
    assert sipp.search(10_000, 4, 1, run, []) == (8_500, 9_350)
    assert [(rate, label) for rate, label, _ in asked] == [
        (8_500, "open1"),
        (11_900, "open2"),
        (11_900, "open2b"),
        (10_200, "open3"),
        (9_350, "open4"),
    ]


def test_ratios_and_formats(parse: ModuleType) -> None:
    assert parse.ratio(5.0, 10.0) == 0.5
    assert parse.ratio(None, 10.0) is None and parse.ratio(5.0, 0.0) is None
    assert parse.fmt_ratio(0.25) == "0.25×" and parse.fmt_ratio(12.4) == "12×"
    assert parse.fmt_int(12_722.4) == "12,722" and parse.fmt_int(None) == "—"


def _run(sipp: ModuleType, rate: float, split: list[float], **kw: object) -> object:
    """A ceiling run of one second: ``rate`` calls, the target's CPU ``split`` by process."""
    fields = dict(
        kind="ceiling",
        rate=100_000,
        calls=None,
        exit_code=0,
        elapsed=1.0,
        successful=int(rate),
        failed=0,
        unexpected=0,
        timeouts=0,
        retransmissions=0,
        dead_call_msgs=0,
        out_of_call_msgs=0,
        call_length_ms=1.0,
        rate_achieved=rate,
        target_cpu=sum(split),
        client_cpu=0.5,
        sipp_mode="un",
        target_cpu_split=split,
    )
    fields.update(kw)
    return sipp.ClientRun(**fields)


def _cell(sipp: ModuleType, workers: int, transport: str, rate: float, **kw: object) -> object:
    split = [1.0] if workers == 1 else [0.0] + [0.9] * workers
    cell = sipp.Cell("responder", "busy", transport, sipp_mode="un", workers=workers, **kw)
    cell.ceiling = _run(sipp, rate, split)
    cell.clean_rate = rate * 0.9
    return cell


def test_workers_list(run: ModuleType) -> None:
    assert run.parse_workers("2,1") == [1, 2]
    assert run.parse_workers("1, 2,2,4") == [1, 2, 4]
    for bad in ("", "0,1", "1,x", "65"):
        with pytest.raises(run.argparse.ArgumentTypeError):
            run.parse_workers(bad)


def test_scaling_options(targets: ModuleType, run: ModuleType) -> None:
    args = run.parse_args(["--scaling"])
    assert args.flows == ["busy"] and args.transports == ["udp", "tcp"]
    assert args.targets == [] and args.workers == [1, 2]
    assert args.json.name == "scaling.json"
    args = run.parse_args(["--scaling", "--workers", "1,2,4", "--flows", "busy,call"])
    assert args.workers == [1, 2, 4] and args.flows == ["busy", "call"]
    # Without --scaling, all that there was: every target and flow, latest.json.
    args = run.parse_args([])
    assert args.targets == list(targets.TARGETS) and args.flows == list(targets.FLOWS)
    assert args.json.name == "latest.json"
    with pytest.raises(SystemExit):
        run.parse_args(["--scaling", "--targets", "kamailio"])
    # SIPp -t tn quits once more calls are in flight than it has connections.
    with pytest.raises(SystemExit):
        run.parse_args(["--scaling", "--max-socket", "100"])
    assert run.parse_args(["--scaling", "--max-socket", "100", "--transports", "udp"])


def test_process_cpu(parse: ModuleType, sipp: ModuleType) -> None:
    assert parse.cpu_pcts([0.01, 0.5, 0.45], 0.5) == pytest.approx([2, 100, 90])
    assert parse.cpu_pcts([1.0], 0.0) == []
    assert parse.fmt_pcts([0.4, 61.5, 58.2]) == "0 · 62 · 58" and parse.fmt_pcts([]) == "—"
    cell = _cell(sipp, 2, "udp", 5000)
    # The supervisor and both workers count in the CPU per call, each shows on its own.
    assert cell.cpu_us == pytest.approx(1.8 / 5000 * 1e6)
    assert cell.process_cpu_pcts == pytest.approx([0, 90, 90])
    assert cell.to_dict()["process_cpu_pct"] == cell.process_cpu_pcts
    assert cell.to_dict()["workers"] == 2 and cell.to_dict()["sipp_mode"] == "un"


def test_speedups_over_the_fewest_workers(sipp: ModuleType, report: ModuleType) -> None:
    cells = [
        _cell(sipp, 1, "udp", 4000),
        _cell(sipp, 2, "udp", 6000),
        _cell(sipp, 2, "tcp", 3000),  # its 1 worker is measured after it
        _cell(sipp, 1, "tcp", 3000, status="error"),
    ]
    ups = {(u["transport"], u["workers"]): u for u in report.speedups(cells)}
    assert ups[("udp", 1)]["ceiling"] == pytest.approx(1.0)
    assert ups[("udp", 2)]["ceiling"] == pytest.approx(1.5)
    assert ups[("udp", 2)]["clean"] == pytest.approx(1.5)
    assert ups[("udp", 2)]["cpu_us_per_call"] == pytest.approx((1.8 / 6000) / (1.0 / 4000))
    assert ups[("tcp", 2)]["base_workers"] == 1 and ups[("tcp", 2)]["ceiling"] is None
    # Cells of the target matrix (no --workers set by the harness) have none.
    assert report.speedups([sipp.Cell("responder", "busy", "udp")]) == []


def test_scaling_table(sipp: ModuleType, report: ModuleType) -> None:
    one, two = _cell(sipp, 1, "udp", 4000), _cell(sipp, 2, "udp", 6000)
    two.ceiling.client_cpu = 0.95
    skipped = sipp.Cell("responder", "busy", "tcp", sipp_mode="tn", workers=2)
    skipped.status, skipped.error = "skipped", "past --max-minutes 8"
    lines = report.scaling_table([one, two, skipped]).splitlines()
    assert "÷ 1 worker: ceiling · clean · µs/call" in lines[0]
    assert lines[2] == "| busy | udp (un) | 1 | 4,000 | 3,600 | 250 | 100 | — | 50 % |  |"
    assert lines[3] == (
        "| busy | udp (un) | 2 | 6,000 | 5,400 | 300 | 0 · 90 · 90 | — | 95 %* "
        "| 1.50× · 1.50× · 1.20× |"
    )
    assert lines[4] == "| busy | tcp (tn) | 2 | skipped (past --max-minutes 8) | | | | | | |"
    for line in lines:
        assert line.count("|") == lines[0].count("|")


def test_matrix_table_unchanged(sipp: ModuleType, report: ModuleType) -> None:
    resp = sipp.Cell("responder", "busy", "udp")
    resp.ceiling = _run(sipp, 5000, [0.5], failed=100, sipp_mode="u1")
    resp.clean_rate, resp.clean_at_least, resp.rss_kib = 4000, True, 46 * 1024
    uas = sipp.Cell("sipp-uas", "busy", "udp", status="error")
    uas.ceiling = _run(sipp, 10_000, [0.25], sipp_mode="u1")
    uas.clean_below = 8500
    kam = sipp.Cell("kamailio", "busy", "udp", status="not installed")
    lines = report.table([resp, uas, kam]).splitlines()
    assert lines[2] == (
        "| busy | udp | responder | 5,000 (2 % failed) | ≥ 4,000 | 100 | 46 | 50 % |  |"
    )
    assert lines[3] == (
        "| busy | udp | sipp-uas (error) | 10,000 | < 8,500 | 25 | — | 50 % | 0.50× · — · 4.00× |"
    )
    assert lines[4] == "| busy | udp | kamailio | not installed  | | | | | |"


def test_netstat_counters(parse: ModuleType) -> None:
    text = (
        "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n"
        "TcpExt: 0 2227 2230\n"
        "IpExt: InNoRoutes InOctets\n"
        "IpExt: 0 123456789012\n"
    )
    counters = parse.parse_netstat(text)
    assert counters["TcpExtListenOverflows"] == 2227
    assert counters["IpExtInOctets"] == 123456789012
    assert parse.parse_netstat("") == {}


def _settings(targets: ModuleType, tmp_path: object, **kw: object) -> object:
    fields = dict(
        seconds=1.5,
        steps=2,
        retries=0,
        limit=1000,
        buff_size=4 * 1024 * 1024,
        max_socket=1024,
        recv_timeout_ms=2000,
        sipp="/usr/bin/sipp",
        kamailio="/usr/sbin/kamailio",
        kamailio_modules=None,
        kamailio_shm=2048,
        responder_args=["--log-level", "WARNING"],
        workdir=tmp_path,
    )
    fields.update(kw)
    return targets.Settings(**fields)


def _scenario(cmd: list[str]) -> str:
    """The file name after SIPp's -sf."""
    return cmd[cmd.index("-sf") + 1].rsplit("/", 1)[-1]


def test_stateless_targets_commands(targets: ModuleType, tmp_path: object) -> None:
    busy = targets.FLOWS["busy"]
    default, stateless = _settings(targets, tmp_path), _settings(targets, tmp_path, stateless=True)
    cmd = targets.Responder(default).command(busy, "udp", 5060)
    assert "--stateless" not in cmd and cmd[-2:] == ["--log-level", "WARNING"]
    cmd = targets.Responder(stateless).command(busy, "udp", 5060)
    assert cmd[-3:] == ["--log-level", "WARNING", "--stateless"]
    cmd = targets.Responder(stateless, workers=2).command(busy, "tcp", 5060)
    assert cmd[-3:] == ["--workers", "2", "--stateless"]
    cmd = targets.Kamailio(default).command(busy, "udp", 5070)
    assert "-A" not in cmd and "STATELESS" not in cmd
    assert cmd[cmd.index("-f") + 1].endswith("bench/kamailio.cfg")
    cmd = targets.Kamailio(stateless).command(busy, "udp", 5070)
    assert cmd[cmd.index("-A") + 1] == "STATELESS"
    assert "udp:127.0.0.1:5070" in cmd and cmd.count("STATELESS") == 1


def test_stateless_scenarios_per_flow(
    targets: ModuleType, sipp: ModuleType, tmp_path: object
) -> None:
    expected = {
        # flow: (default UAC, default UAS, stateless UAC, stateless UAS)
        "options": ("uac_options.xml", "uas_options.xml", "uac_options.xml", "uas_options.xml"),
        "busy": (
            "uac_busy.xml",
            "uas_busy.xml",
            "uac_busy_stateless.xml",
            "uas_busy_stateless.xml",
        ),
        "call": (
            "uac_call.xml",
            "uas_call.xml",
            "uac_call_stateless.xml",
            "uas_call_stateless.xml",
        ),
    }
    assert set(expected) == set(targets.FLOWS)
    for name, (uac, uas, sl_uac, sl_uas) in expected.items():
        flow = targets.FLOWS[name]
        assert (flow.uac_scenario(), flow.uas_scenario()) == (uac, uas)
        assert (flow.uac_scenario(False), flow.uas_scenario(False)) == (uac, uas)
        assert (flow.uac_scenario(True), flow.uas_scenario(True)) == (sl_uac, sl_uas)
        for scenario in {uac, uas, sl_uac, sl_uas}:
            assert (targets.SCENARIOS / scenario).is_file()
        for stateless, want in ((False, uas), (True, sl_uas)):
            settings = _settings(targets, tmp_path, stateless=stateless)
            assert _scenario(targets.SippUas(settings).command(flow, "udp", 5080)) == want
        for stateless, want in ((False, uac), (True, sl_uac)):
            settings = _settings(targets, tmp_path, stateless=stateless)
            cmd = sipp.client_command(
                settings, flow, 5080, "u1", "t", rate=100, limit=10, calls=None
            )
            assert _scenario(cmd) == want and cmd[1] == "127.0.0.1:5080"
            assert cmd[cmd.index("-s") + 1] == flow.service
    # The stateless client expects the final response alone: no 100 or 180 to receive.
    for name in ("busy", "call"):
        text = (targets.SCENARIOS / targets.FLOWS[name].uac_scenario(True)).read_text()
        assert 'response="100"' not in text and 'response="180"' not in text
        text = (targets.SCENARIOS / targets.FLOWS[name].uas_scenario(True)).read_text()
        assert "100 Trying" not in text and "180 Ringing" not in text
        assert "retrans=" not in text


def test_median_cell_of_rounds(sipp: ModuleType) -> None:
    def cell(clean: float | None, status: str = "ok") -> object:
        c = sipp.Cell("responder", "busy", "udp", status=status)
        c.clean_rate = clean
        return c

    rounds = [cell(100.0), cell(300.0), cell(None, "error"), cell(200.0)]
    chosen = sipp.median_cell(rounds)
    assert chosen is rounds[3]  # of 100, 200, 300 (the failed round left out): 200
    assert [r["clean_calls_per_s"] for r in chosen.rounds] == [100.0, 300.0, None, 200.0]
    assert [r["status"] for r in chosen.rounds] == ["ok", "ok", "error", "ok"]
    none_clean = [cell(None), cell(50.0)]
    assert sipp.median_cell(none_clean) is none_clean[1]  # even: the upper middle
    failed = [cell(None, "error"), cell(None, "skipped")]
    assert sipp.median_cell(failed) is failed[0]
    one = cell(10.0)
    assert sipp.median_cell([one]) is one and one.rounds == []


def test_targets_are_judged_round_by_round(sipp: ModuleType, report: ModuleType) -> None:
    def cell(target: str, clean: float | None, cpu_s: float, status: str = "ok") -> object:
        c = sipp.Cell(target, "busy", "udp", status=status)
        c.ceiling = _run(sipp, 10_000, [cpu_s])  # 10,000 calls: cpu_s * 100 µs a call
        c.clean_rate = clean
        return c

    # Round 1 a slow machine, round 2 a fast one: the responder's rows would be compared
    # across rounds by their medians, its ratios are taken within each round.
    rounds = [
        [cell("responder", 700, 0.6), cell("sipp-uas", 1000, 0.3), cell("kamailio", 600, 0.5)],
        [cell("responder", 1800, 0.2), cell("sipp-uas", 2000, 0.1), cell("kamailio", 900, 0.4)],
        [cell("responder", None, 0.5), cell("sipp-uas", 1000, 0.2), cell("kamailio", 900, 0.1)],
    ]
    (pair,) = report.paired(rounds)
    assert (pair["flow"], pair["transport"]) == ("busy", "udp")
    assert pair["clean_ratios"] == pytest.approx([0.7, 0.9, 0.0])  # no clean rate: 0
    assert pair["clean_median"] == pytest.approx(0.7) and pair["clean_met"] is False
    assert pair["cpu_ratios"] == pytest.approx([1.2, 0.5, 5.0])
    assert pair["cpu_median"] == pytest.approx(1.2) and pair["cpu_met"] is True
    # Stateless: Kamailio's sl is the only reference.
    (sl,) = report.paired(rounds, stateless=True)
    assert sl["clean_ratios"] == pytest.approx([700 / 600, 2.0, 0.0])
    assert sl["clean_median"] == pytest.approx(700 / 600) and sl["clean_met"] is True
    # Two rounds: the mean of the middle two.  No usable reference: no ratio, no verdict.
    (two,) = report.paired(rounds[:2])
    assert two["clean_median"] == pytest.approx(0.8) and two["clean_met"] is True
    # A reference that died counts with the clean rate it reached; a failed responder as 0.
    died = [[cell("responder", 700, 0.6), cell("sipp-uas", 1000, 0.3, status="error")]]
    assert report.paired(died)[0]["clean_ratios"] == pytest.approx([0.7])
    failed = [[cell("responder", 700, 0.6, status="error"), cell("sipp-uas", 1000, 0.3)]]
    assert report.paired(failed)[0]["clean_ratios"] == [0.0]
    lone = [[cell("responder", 700, 0.6), cell("kamailio", None, 0.5, status="error")]]
    lone[0][1].ceiling = None  # it never ran
    (none,) = report.paired(lone)
    assert none["clean_ratios"] == [] and none["clean_met"] is None
    assert none["cpu_median"] is None and none["cpu_met"] is None
    lines = report.paired_table([pair, none]).splitlines()
    assert (
        lines[2] == "| busy | udp | 0.70 · 0.90 · 0.00 | 0.700 ✗ | 1.20 · 0.50 · 5.00 | 1.200 ✓ |"
    )
    assert lines[3] == "| busy | udp | — | — | — | — |"


def test_search_options(run: ModuleType) -> None:
    args = run.parse_args([])
    assert (args.steps, args.retries) == (4, 1)
    args = run.parse_args(["--quick"])
    assert (args.steps, args.retries) == (2, 0)
    assert (args.rounds, args.max_minutes) == (1, 12.0)
    assert run.parse_args(["--retries", "3"]).retries == 3
    with pytest.raises(SystemExit):
        run.parse_args(["--retries", "-1"])
    args = run.parse_args(["--rounds", "3"])
    assert (args.rounds, args.max_minutes) == (3, 36.0)
    with pytest.raises(SystemExit):
        run.parse_args(["--rounds", "0"])


def test_stateless_options(targets: ModuleType, report: ModuleType, run: ModuleType) -> None:
    args = run.parse_args(["--stateless", "--quick"])
    assert args.stateless and args.json.name == "stateless.json"
    assert args.targets == list(targets.TARGETS) and args.flows == list(targets.FLOWS)
    assert not run.parse_args([]).stateless
    assert run.parse_args([]).json.name == "latest.json"
    with pytest.raises(SystemExit):
        run.parse_args(["--stateless", "--scaling"])
    assert report.table_title(False) == ""
    assert report.table_title(True).startswith("Stateless")
    assert targets.FLOWS["busy"].describe(True) == "INVITE → 486, ACK (ignored)"
    assert targets.FLOWS["options"].describe(True) == targets.FLOWS["options"].describe()


def test_pin_puts_the_target_and_sipp_on_cores_of_their_own(
    targets: ModuleType, sipp: ModuleType, tmp_path: object
) -> None:
    busy = targets.FLOWS["busy"]
    for pin in (False, True):
        settings = _settings(targets, tmp_path, pin=pin)
        cmd = sipp.client_command(settings, busy, 5080, "u1", "t", rate=100, limit=10, calls=1)
        target = targets.pinned(settings, 0, ["python", "-m", "sipresponder"])
        if pin:
            assert cmd[:3] == ["taskset", "-c", "1"] and cmd[3] == "/usr/bin/sipp"
            assert target == ["taskset", "-c", "0", "python", "-m", "sipresponder"]
        else:
            assert cmd[0] == "/usr/bin/sipp" and target[0] == "python"
