//! Reading and writing the only audio format the voice commands accept: 8 kHz mono 16-bit PCM
//! WAV. Anything else is a typed error naming what was found.

use super::VoiceError;
use std::path::Path;

/// Longest file accepted: 10 minutes at 8 kHz (the commands are for utterances, not archives).
pub const WAV_SAMPLES_MAX: usize = 8_000 * 600;

/// Reads an 8 kHz mono 16-bit WAV from bytes.
pub fn read_wav_bytes(bytes: &[u8]) -> Result<Vec<i16>, VoiceError> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| VoiceError::BadWav(e.to_string()))?;
    let spec = reader.spec();
    if spec.sample_rate != 8_000
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(VoiceError::UnsupportedFormat {
            sample_rate_hz: spec.sample_rate,
            channels: spec.channels,
            bits_per_sample: spec.bits_per_sample,
        });
    }
    if reader.len() as usize > WAV_SAMPLES_MAX {
        return Err(VoiceError::TooLong);
    }
    reader
        .into_samples::<i16>()
        .map(|s| s.map_err(|e| VoiceError::BadWav(e.to_string())))
        .collect()
}

/// Reads an 8 kHz mono 16-bit WAV file.
pub fn read_wav(path: &Path) -> Result<Vec<i16>, VoiceError> {
    let bytes =
        std::fs::read(path).map_err(|e| VoiceError::Io(format!("{}: {e}", path.display())))?;
    read_wav_bytes(&bytes).map_err(|e| match e {
        VoiceError::BadWav(m) => VoiceError::BadWav(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Writes samples as an 8 kHz mono 16-bit WAV (used by tests and tools that build strings).
pub fn write_wav(path: &Path, samples: &[i16]) -> Result<(), VoiceError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let io = |e: hound::Error| VoiceError::Io(format!("{}: {e}", path.display()));
    let mut writer = hound::WavWriter::create(path, spec).map_err(io)?;
    for &s in samples {
        writer.write_sample(s).map_err(io)?;
    }
    writer.finalize().map_err(io)
}

/// Linear samples to floats in ±1.
pub fn to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| s as f32 / 32_768.0).collect()
}

/// Floats in ±1 back to linear samples (clipped).
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(rate: u32, channels: u16, bits: u16) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
            for i in 0..100i32 {
                if bits == 16 {
                    w.write_sample((i * 100) as i16).unwrap();
                } else {
                    w.write_sample(i as i8).unwrap();
                }
            }
            w.finalize().unwrap();
        }
        cursor.into_inner()
    }

    #[test]
    fn accepts_8k_mono_16_and_rejects_others() {
        let good = read_wav_bytes(&wav_bytes(8_000, 1, 16)).unwrap();
        assert_eq!(good.len(), 100);
        assert_eq!(good[3], 300);
        assert!(matches!(
            read_wav_bytes(&wav_bytes(16_000, 1, 16)),
            Err(VoiceError::UnsupportedFormat {
                sample_rate_hz: 16_000,
                ..
            })
        ));
        assert!(matches!(
            read_wav_bytes(&wav_bytes(8_000, 2, 16)),
            Err(VoiceError::UnsupportedFormat { channels: 2, .. })
        ));
        assert!(matches!(
            read_wav_bytes(&wav_bytes(8_000, 1, 8)),
            Err(VoiceError::UnsupportedFormat {
                bits_per_sample: 8,
                ..
            })
        ));
        assert!(matches!(
            read_wav_bytes(b"RIFFnonsense"),
            Err(VoiceError::BadWav(_))
        ));
    }
}
