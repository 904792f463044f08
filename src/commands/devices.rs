use crate::exit;

pub fn run() -> u8 {
    println!("interp   available   reference interpreter (f64), every program");
    exit::OK
}
