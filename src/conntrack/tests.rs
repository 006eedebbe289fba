//! Lines as conntrack 1.4.7 printed them in the lab, and hostile ones.
use super::*;

const UDP: &str = "udp      17 29 src=172.7.21.2 dst=172.7.22.2 sport=5140 dport=5140 [UNREPLIED] src=172.7.22.2 dst=10.4.7.21 sport=5140 dport=5140 mark=0 use=1";
const TCP: &str = "tcp      6 119 TIME_WAIT src=172.7.21.2 dst=172.7.22.2 sport=35292 dport=7000 src=172.7.22.2 dst=10.4.7.21 sport=7000 dport=35292 [ASSURED] mark=0 use=1 id=3237161382";
const ICMP6: &str = "icmpv6   58 29 src=fd00:7:0:21::2 dst=fd00:7:0:22::2 type=128 code=0 id=17 src=fd00:7:0:22::2 dst=fd00:4:7::21 type=129 code=0 id=17 mark=0 use=1 id=99887766";

#[test]
fn flows_as_conntrack_prints_them() {
    let f = parse(UDP).unwrap();
    assert_eq!(f.proto, "udp");
    assert_eq!(f.state, None);
    assert_eq!(f.orig.src.to_string(), "172.7.21.2");
    assert_eq!(f.reply.dst.to_string(), "10.4.7.21");
    assert_eq!((f.orig.sport, f.orig.dport), (Some(5140), Some(5140)));
    assert!(!f.connection_oriented());
    let f = parse(TCP).unwrap();
    assert_eq!(f.state.as_deref(), Some("TIME_WAIT"));
    assert!(!f.live());
    assert!(
        parse(&TCP.replace("TIME_WAIT", "ESTABLISHED"))
            .unwrap()
            .live()
    );
    assert_eq!(f.reply.dport, Some(35292));
    assert!(f.connection_oriented());
    let f = parse(ICMP6).unwrap();
    assert_eq!(f.orig.icmp, Some((128, 0, 17)));
    assert_eq!(f.reply.icmp, Some((129, 0, 17)));
}

#[test]
fn odd_lines_are_refused_by_name() {
    let long = format!("{UDP} {}", "x=1 ".repeat(300));
    let cases: Vec<(String, LineError)> = vec![
        (long.clone(), LineError::TooLong(long.len())),
        (
            UDP.replace("mark=0", "mark=0\u{1b}[2J"),
            LineError::Byte(0x1b, 136),
        ),
        (UDP.replacen(' ', "\t", 1), LineError::Byte(b'\t', 3)),
        (
            UDP.replace("dst=10.4.7.21", "dst=10.4.7.256"),
            LineError::Address("10.4.7.256".into()),
        ),
        (
            UDP.replace("sport=5140 dport=5140 [", "sport=+5140 dport=5140 ["),
            LineError::Number("+5140".into()),
        ),
        (
            UDP.replace("sport=5140 dport=5140 [", "sport=70000 dport=5140 ["),
            LineError::Number("70000".into()),
        ),
        (
            format!("{UDP} src=1.2.3.4 dst=1.2.3.5"),
            LineError::ThirdTuple,
        ),
        (
            "udp 17 29 src=172.7.21.2 dst=172.7.22.2 sport=5140 dport=5140".into(),
            LineError::Missing("reply"),
        ),
        (
            UDP.replace("dst=10.4.7.21", "dst=fd00::1"),
            LineError::Families,
        ),
        ("UDP 17 29 src=1.2.3.4".into(), LineError::Head),
        ("udp 17".into(), LineError::Head),
        (
            UDP.replace("[UNREPLIED]", "surprise"),
            LineError::Stray("surprise".into()),
        ),
        (
            "udp 17 29 mark=0 src=1.2.3.4 dst=1.2.3.5".into(),
            LineError::Stray("mark=0".into()),
        ),
    ];
    for (line, want) in cases {
        let got = parse(&line).map(|_| ()).unwrap_err();
        let shown = line.escape_debug().to_string();
        assert_eq!(got, want, "{shown}");
    }
}
