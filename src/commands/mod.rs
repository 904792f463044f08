pub mod bench;
pub mod build;
pub mod check;
pub mod devices;
pub mod emit;
pub mod run;
