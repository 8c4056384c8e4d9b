use std::os::unix::fs::symlink;

use super::*;

/// A sysfs tree shaped like the kernel's: /sys/class/tty/<tty>/device links
/// to the usb-serial port below the USB interface, whose parent USB device
/// holds idVendor/idProduct/serial.
fn usb_tty(root: &Path, tty: &str, usb: &str, vid: &str, pid: &str, serial: Option<&str>) {
    let dev = root.join(format!("sys/devices/pci0000:00/usb1/{usb}"));
    let port = dev.join(format!("{usb}:1.0/{tty}"));
    std::fs::create_dir_all(&port).expect("mkdir");
    std::fs::write(dev.join("idVendor"), format!("{vid}\n")).expect("write");
    std::fs::write(dev.join("idProduct"), format!("{pid}\n")).expect("write");
    if let Some(s) = serial {
        std::fs::write(dev.join("serial"), format!("{s}\n")).expect("write");
    }
    let class = root.join("sys/class/tty").join(tty);
    std::fs::create_dir_all(&class).expect("mkdir");
    symlink(&port, class.join("device")).expect("symlink");
    std::fs::create_dir_all(root.join("dev")).expect("mkdir");
}

#[test]
fn port_specs_parse() {
    assert_eq!("auto".parse(), Ok(PortSpec::Auto));
    assert_eq!(
        "/dev/serial/by-id/usb-Prolific-if00-port0".parse(),
        Ok(PortSpec::Path(
            "/dev/serial/by-id/usb-Prolific-if00-port0".into()
        ))
    );
    assert_eq!(
        "usb:0665:5161".parse(),
        Ok(PortSpec::Usb {
            vid: 0x0665,
            pid: 0x5161,
            serial: None
        })
    );
    assert_eq!(
        "usb:067b:2303:A1B2".parse(),
        Ok(PortSpec::Usb {
            vid: 0x067b,
            pid: 0x2303,
            serial: Some("A1B2".into())
        })
    );
    // As lsusb prints it (`ID 04b4:5500 Cypress ...`), the README's example.
    assert_eq!(
        "04b4:5500".parse(),
        Ok(PortSpec::Usb {
            vid: 0x04b4,
            pid: 0x5500,
            serial: None
        })
    );
    assert_eq!(
        "067B:2303:A1B2".parse(),
        Ok(PortSpec::Usb {
            vid: 0x067b,
            pid: 0x2303,
            serial: Some("A1B2".into())
        })
    );
    assert!("4b4:5500".parse::<PortSpec>().is_err());
    assert!("04b4:55000".parse::<PortSpec>().is_err());
    assert!("usb:67b".parse::<PortSpec>().is_err());
    assert!(
        "ttyUSB0"
            .parse::<PortSpec>()
            .unwrap_err()
            .contains("absolute")
    );
    assert!("".parse::<PortSpec>().is_err());
}

#[test]
fn finds_usb_serial_ports_by_id_in_sysfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = SysRoot::at(dir.path());
    usb_tty(dir.path(), "ttyUSB0", "1-1", "067b", "2303", Some("A1B2"));
    usb_tty(dir.path(), "ttyACM0", "1-2", "0665", "5161", None);
    // A non-USB tty (a real serial port) has no USB ancestor.
    std::fs::create_dir_all(dir.path().join("sys/devices/platform/serial8250/tty/ttyS0"))
        .expect("mkdir");
    std::fs::create_dir_all(dir.path().join("sys/class/tty/ttyS0")).expect("mkdir");
    symlink(
        dir.path().join("sys/devices/platform/serial8250/tty/ttyS0"),
        dir.path().join("sys/class/tty/ttyS0/device"),
    )
    .expect("symlink");
    let ports = usb_serial_ports(&root);
    let names: Vec<_> = ports.iter().map(|p| p.tty.as_str()).collect();
    assert_eq!(names, vec!["ttyACM0", "ttyUSB0"]);
    assert_eq!(ports[1].serial.as_deref(), Some("A1B2"));
    assert_eq!(ports[1].device, dir.path().join("dev/ttyUSB0"));
    let spec = PortSpec::Usb {
        vid: 0x0665,
        pid: 0x5161,
        serial: None,
    };
    assert_eq!(
        resolve(&spec, &root).expect("found"),
        dir.path().join("dev/ttyACM0")
    );
    let wrong_serial = PortSpec::Usb {
        vid: 0x067b,
        pid: 0x2303,
        serial: Some("ZZZ".into()),
    };
    let err = resolve(&wrong_serial, &root).unwrap_err().to_string();
    assert!(
        err.contains("usb:067b:2303:ZZZ") && err.contains("plugged in"),
        "{err}"
    );
    assert_eq!(
        resolve(&PortSpec::Auto, &root).expect("auto"),
        dir.path().join("dev/ttyACM0")
    );
}

#[test]
fn a_replugged_adapter_is_found_under_its_new_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = SysRoot::at(dir.path());
    usb_tty(dir.path(), "ttyUSB0", "1-1", "0665", "5161", None);
    let spec: PortSpec = "usb:0665:5161".parse().expect("spec");
    assert_eq!(
        resolve(&spec, &root).expect("found"),
        dir.path().join("dev/ttyUSB0")
    );
    // Unplug: the kernel removes the tty; replug: it comes back as ttyUSB1
    // (ttyUSB0 still held open by the old handle) on another port.
    std::fs::remove_dir_all(dir.path().join("sys/class/tty/ttyUSB0")).expect("rm");
    std::fs::remove_dir_all(dir.path().join("sys/devices")).expect("rm");
    assert!(resolve(&spec, &root).is_err());
    usb_tty(dir.path(), "ttyUSB1", "1-3", "0665", "5161", None);
    assert_eq!(
        resolve(&spec, &root).expect("found"),
        dir.path().join("dev/ttyUSB1")
    );
}

#[test]
fn candidate_ports_prefer_by_id_links_without_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = SysRoot::at(dir.path());
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(dev.join("serial/by-id")).expect("mkdir");
    for t in ["ttyUSB0", "ttyUSB1", "ttyACM0", "ttyS0"] {
        std::fs::write(dev.join(t), "").expect("touch");
    }
    symlink(
        "../../ttyUSB1",
        dev.join("serial/by-id/usb-Cyber_UPS-if00-port0"),
    )
    .expect("symlink");
    let c = candidate_ports(&root);
    assert_eq!(
        c,
        vec![
            dev.join("serial/by-id/usb-Cyber_UPS-if00-port0"),
            dev.join("ttyACM0"),
            dev.join("ttyUSB0"),
        ]
    );
}

#[test]
fn missing_device_error_tells_what_to_do() {
    let err = SerialLine::open(Path::new("/dev/nodewarden-no-such-tty"), 2400)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.starts_with("cannot open /dev/nodewarden-no-such-tty"),
        "{err}"
    );
    assert!(err.contains("is the UPS plugged in?"), "{err}");
    assert!(err.contains("nodewarden-agent ups probe"), "{err}");
}

#[test]
fn a_port_held_by_another_program_is_reported_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = crate::ups::sim::SimUps::spawn(
        crate::ups::sim::megatec::MegatecResponder::default(),
        &dir.path().join("ups"),
    )
    .expect("sim");
    let _first = SerialLine::open(sim.link(), 2400).expect("first open");
    let err = SerialLine::open(sim.link(), 2400)
        .err()
        .expect("second open must fail")
        .to_string();
    assert!(err.contains("another program holds the port"), "{err}");
}

#[test]
fn permission_errors_hint_at_dialout() {
    let e = open_error(
        "/dev/ttyUSB0",
        serialport::Error::new(
            serialport::ErrorKind::Io(io::ErrorKind::PermissionDenied),
            "Permission denied",
        ),
    );
    assert_eq!(
        e.to_string(),
        "cannot open /dev/ttyUSB0: Permission denied; add the nodewarden user to group dialout"
    );
}
