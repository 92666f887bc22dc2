//! Bounded deterministic fuzz of the 8259 pair: random port accesses (biased toward init
//! sequences, EOIs and OCW3), line changes and INTAs, checking after every step that nothing
//! panics and that INTR and INTA keep to the model's rules.

use std::time::Instant;

use basalt_devices::pic::*;
use basalt_emu::fuzz::XorShift;

/// About 0.5 s in a debug build.
const STEPS: u64 = 150_000;

const PORTS: [u16; 6] =
    [PIC_MASTER_CMD, PIC_MASTER_DATA, PIC_SLAVE_CMD, PIC_SLAVE_DATA, ELCR_MASTER, ELCR_SLAVE];

fn command(rng: &mut XorShift) -> u8 {
    match rng.below(6) {
        // ICW1 with random IC4/SNGL/LTIM (SNGL and LTIM rarely).
        0 => 0x11 | if rng.one_in(8) { 0x02 } else { 0 } | if rng.one_in(8) { 0x08 } else { 0 },
        // OCW2: EOIs, rotations, set priority.
        1 | 2 => ((rng.below(8) as u8) << 5) | rng.below(8) as u8,
        // OCW3: register select, poll, special mask.
        3 | 4 => {
            0x08 | (rng.below(4) as u8) | if rng.one_in(3) { 0x04 } else { 0 } | ((rng.below(4) as u8) << 5)
        }
        _ => rng.next_u64() as u8,
    }
}

fn data(rng: &mut XorShift) -> u8 {
    match rng.below(4) {
        0 => 0x00,
        1 => 0x30 + rng.below(2) as u8 * 8,
        2 => [0x01, 0x03, 0x11, 0x04, 0x02][rng.below(5) as usize],
        _ => rng.next_u64() as u8,
    }
}

#[test]
fn fuzz_pic() {
    let start = Instant::now();
    let mut rng = XorShift::new(0x8259_a000_0000_0001);
    let mut p = Pic::new();
    let (mut delivered, mut spurious7, mut spurious15) = (0u64, 0u64, 0u64);
    for step in 0..STEPS {
        match rng.below(100) {
            0..=34 => {
                let irq = rng.below(17) as u32;
                p.set_irq(irq, rng.one_in(2));
            }
            35..=59 => {
                let port = PORTS[rng.below(6) as usize];
                let v = if port & 1 == 0 && port < 0x100 { command(&mut rng) } else { data(&mut rng) };
                p.port_write(port, &[v]);
            }
            60..=69 => {
                let port = if rng.one_in(8) { rng.next_u64() as u16 } else { PORTS[rng.below(6) as usize] };
                let mut buf = vec![0u8; [1, 2, 4][rng.below(3) as usize]];
                if rng.one_in(2) {
                    p.port_read(port, &mut buf);
                } else {
                    p.port_write(port, &buf);
                }
            }
            70..=98 => {
                // INTA, mostly when INTR is up (as a CPU would), sometimes regardless.
                let intr = p.intr();
                if !intr && !rng.one_in(4) {
                    continue;
                }
                let (m_irr, m_isr, m_imr) = p.registers(false);
                let (s_irr, s_isr, s_imr) = p.registers(true);
                let (mb, sb) = p.vector_bases();
                let cascaded = p.cascaded();
                let v = p.acknowledge();
                if !intr {
                    assert_eq!(v, mb | 7, "step {step}: INTA without INTR must be spurious 7");
                    assert_eq!(p.registers(false).1, m_isr, "step {step}: spurious 7 sets no IS bit");
                    spurious7 += 1;
                    continue;
                }
                if mb == sb {
                    continue;
                }
                let m_req = m_irr & !m_imr;
                if cascaded && v & 0xF8 == sb {
                    assert_ne!(m_req & 4, 0, "step {step}: slave vector without IR2 requested");
                    let sir = v & 7;
                    // Spurious 15 is base + 7 too: tell it from IR7 by IR7 not being deliverable.
                    if s_irr & !s_imr & (1 << sir) == 0 || (sir == 7 && s_isr & 0x80 != 0) {
                        assert_eq!(sir, 7, "step {step}: slave vector {v:#x} without its request");
                        spurious15 += 1;
                    } else {
                        // A level never nests on itself on the slave (no SFNM there).
                        assert_eq!(
                            s_isr & (1 << sir),
                            0,
                            "step {step}: slave IR{sir} delivered while in service"
                        );
                        delivered += 1;
                    }
                } else {
                    assert_eq!(v & 0xF8, mb, "step {step}: vector {v:#x} from neither chip");
                    let ir = v & 7;
                    assert!(!(cascaded && ir == 2), "step {step}: the cascade IR gave a master vector");
                    assert_ne!(m_req & (1 << ir), 0, "step {step}: vector {v:#x} without its request");
                    assert_eq!(m_isr & (1 << ir), 0, "step {step}: IR{ir} delivered while in service");
                    delivered += 1;
                }
            }
            _ => p.reset(),
        }
        // INTR only with an unmasked master request (the cascade bit may be a latched slave
        // request that has gone: the documented spurious 15).
        let (irr, _, imr) = p.registers(false);
        if p.intr() {
            assert_ne!(irr & !imr, 0, "step {step}: INTR with no unmasked request");
        }
        let mut e = [0u8; 2];
        p.port_read(ELCR_MASTER, &mut e);
        assert_eq!(e[0] & !ELCR_MASTER_WRITABLE, 0);
        assert_eq!(e[1] & !ELCR_SLAVE_WRITABLE, 0);
    }
    eprintln!(
        "fuzz_pic: {STEPS} steps in {:?}: {delivered} delivered, {spurious7} spurious 7, {spurious15} spurious 15",
        start.elapsed()
    );
    assert!(delivered > STEPS / 100, "only {delivered} delivered");
    assert!(spurious7 > 0 && spurious15 > 0);
}
