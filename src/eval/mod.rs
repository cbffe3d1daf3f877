//! Accuracy tools: needle-in-a-haystack grids (`niah`), recall per layer (`layers`) and the
//! per-model calibration (`calibrate`), over one shared core.
pub mod calibrate;
pub mod layers;
pub mod niah;
