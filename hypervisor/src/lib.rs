#![no_std]

pub mod frames;
