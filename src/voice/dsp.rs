//! Signal pieces for 8 kHz speech: pre-emphasis, framing, windowing, a radix-2 FFT, a mel
//! filterbank (with an optional vocal-tract-length warp for training), log-mel and MFCC,
//! deltas and cepstral mean normalisation.
//!
//! Everything here is pure and allocation-bounded by its input; the sizes are constants so that
//! the model files and the code always agree.

/// The only sample rate this module handles: telephone audio.
pub const SAMPLE_RATE_HZ: u32 = 8_000;
/// Analysis window: 25 ms.
pub const FRAME_LEN: usize = 200;
/// Hop between frames: 10 ms.
pub const FRAME_HOP: usize = 80;
/// FFT size (the window is zero-padded to it).
pub const FFT_LEN: usize = 256;
/// Number of spectrum bins kept (DC to Nyquist).
pub const SPECTRUM_BINS: usize = FFT_LEN / 2 + 1;
/// Mel bands.
pub const MEL_BANDS: usize = 32;
/// Cepstral coefficients kept (c0 to c19).
pub const CEPSTRA: usize = 30;
/// Pre-emphasis coefficient.
pub const PRE_EMPHASIS: f32 = 0.97;
/// Lowest and highest filterbank edges: the telephone band with a little margin.
pub const MEL_LOW_HZ: f32 = 100.0;
pub const MEL_HIGH_HZ: f32 = 3_800.0;

/// A tiny deterministic generator (splitmix64) so that training and tests are reproducible
/// without depending on the generator a crate version happens to ship.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }
    /// Uniform integer in [0, n); n must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Applies `y[n] = x[n] - a * x[n-1]` in place (the first sample is kept as is).
pub fn pre_emphasis(samples: &mut [f32], coefficient: f32) {
    for i in (1..samples.len()).rev() {
        samples[i] -= coefficient * samples[i - 1];
    }
}

/// Number of whole frames in `len` samples.
pub fn frame_count(len: usize) -> usize {
    if len < FRAME_LEN {
        0
    } else {
        1 + (len - FRAME_LEN) / FRAME_HOP
    }
}

/// A Hamming window of `len` points.
pub fn hamming(len: usize) -> Vec<f32> {
    let denominator = (len.max(2) - 1) as f32;
    (0..len)
        .map(|i| 0.54 - 0.46 * (2.0 * std::f32::consts::PI * i as f32 / denominator).cos())
        .collect()
}

/// An in-place iterative radix-2 complex FFT of a fixed power-of-two size.
#[derive(Debug, Clone)]
pub struct Fft {
    len: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
    reversed: Vec<usize>,
}

impl Fft {
    /// `len` is rounded up to a power of two (at least 2).
    pub fn new(len: usize) -> Self {
        let len = len.max(2).next_power_of_two();
        let bits = len.trailing_zeros();
        let reversed = (0..len)
            .map(|i| i.reverse_bits() >> (usize::BITS - bits))
            .collect();
        let (cos, sin) = (0..len / 2)
            .map(|k| {
                let angle = -2.0 * std::f64::consts::PI * k as f64 / len as f64;
                (angle.cos() as f32, angle.sin() as f32)
            })
            .unzip();
        Fft {
            len,
            cos,
            sin,
            reversed,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Transforms `re`/`im` (both exactly `len()` long) in place.
    pub fn transform(&self, re: &mut [f32], im: &mut [f32]) {
        let n = self.len;
        if re.len() != n || im.len() != n {
            return;
        }
        for i in 0..n {
            let j = self.reversed[i];
            if j > i {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let mut size = 2;
        while size <= n {
            let half = size / 2;
            let step = n / size;
            for start in (0..n).step_by(size) {
                for k in 0..half {
                    let (wr, wi) = (self.cos[k * step], self.sin[k * step]);
                    let (a, b) = (start + k, start + k + half);
                    let tr = re[b] * wr - im[b] * wi;
                    let ti = re[b] * wi + im[b] * wr;
                    re[b] = re[a] - tr;
                    im[b] = im[a] - ti;
                    re[a] += tr;
                    im[a] += ti;
                }
            }
            size *= 2;
        }
    }

    /// Power spectrum |X[k]|^2 for k in 0..=len/2 of a real frame (zero-padded or truncated).
    pub fn power_spectrum(
        &self,
        frame: &[f32],
        re: &mut Vec<f32>,
        im: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) {
        re.clear();
        re.extend(frame.iter().take(self.len).copied());
        re.resize(self.len, 0.0);
        im.clear();
        im.resize(self.len, 0.0);
        self.transform(re, im);
        out.clear();
        out.extend((0..=self.len / 2).map(|k| re[k] * re[k] + im[k] * im[k]));
    }
}

pub fn hz_to_mel(hz: f32) -> f32 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

pub fn mel_to_hz(mel: f32) -> f32 {
    700.0 * (10f32.powf(mel / 2595.0) - 1.0)
}

/// Triangular mel filters over the power spectrum, stored sparsely (first bin and weights).
#[derive(Debug, Clone)]
pub struct MelFilterbank {
    filters: Vec<(usize, Vec<f32>)>,
}

impl MelFilterbank {
    /// `warp` scales frequencies (vocal tract length perturbation); 1.0 is the plain filterbank.
    /// The warp is piecewise linear so that the band edges stay inside the telephone band.
    pub fn new(bands: usize, warp: f32) -> Self {
        let nyquist = SAMPLE_RATE_HZ as f32 / 2.0;
        let (mel_lo, mel_hi) = (hz_to_mel(MEL_LOW_HZ), hz_to_mel(MEL_HIGH_HZ));
        let bin_hz = SAMPLE_RATE_HZ as f32 / FFT_LEN as f32;
        // Filter edge frequencies, then warped: f' = f / warp below a knee, linear to the top.
        let knee = MEL_HIGH_HZ * 0.85 * warp.min(1.0);
        let warp_hz = |f: f32| -> f32 {
            if f <= knee {
                f / warp
            } else {
                let at_knee = knee / warp;
                at_knee + (MEL_HIGH_HZ - at_knee) * (f - knee) / (MEL_HIGH_HZ - knee)
            }
        };
        let edges: Vec<f32> = (0..bands + 2)
            .map(|i| {
                let f = mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f32 / (bands + 1) as f32);
                warp_hz(f).clamp(0.0, nyquist)
            })
            .collect();
        let filters = (0..bands)
            .map(|b| {
                let (lo, mid, hi) = (edges[b], edges[b + 1], edges[b + 2]);
                let first = (lo / bin_hz).floor() as usize;
                let last = ((hi / bin_hz).ceil() as usize).min(FFT_LEN / 2);
                let weights = (first..=last)
                    .map(|k| {
                        let f = k as f32 * bin_hz;
                        if f <= lo || f >= hi {
                            0.0
                        } else if f <= mid {
                            (f - lo) / (mid - lo).max(1e-3)
                        } else {
                            (hi - f) / (hi - mid).max(1e-3)
                        }
                    })
                    .collect();
                (first, weights)
            })
            .collect();
        MelFilterbank { filters }
    }

    pub fn bands(&self) -> usize {
        self.filters.len()
    }

    /// Natural log of the band energies (floored), appended to `out`.
    pub fn log_energies(&self, power: &[f32], out: &mut Vec<f32>) {
        for (first, weights) in &self.filters {
            let energy: f32 = weights
                .iter()
                .enumerate()
                .map(|(i, w)| w * power.get(first + i).copied().unwrap_or(0.0))
                .sum();
            out.push(energy.max(1e-8).ln());
        }
    }
}

/// DCT-II matrix (orthonormal) from `inputs` log energies to `outputs` cepstra.
pub fn dct_matrix(inputs: usize, outputs: usize) -> Vec<f32> {
    let mut m = Vec::with_capacity(inputs * outputs);
    for k in 0..outputs {
        let scale = if k == 0 {
            (1.0 / inputs as f32).sqrt()
        } else {
            (2.0 / inputs as f32).sqrt()
        };
        for n in 0..inputs {
            m.push(
                scale * (std::f32::consts::PI * k as f32 * (n as f32 + 0.5) / inputs as f32).cos(),
            );
        }
    }
    m
}

/// A feature matrix: `rows` frames of `dims` values, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    pub dims: usize,
    pub data: Vec<f32>,
}

impl Features {
    pub fn new(dims: usize) -> Self {
        Features {
            dims,
            data: Vec::new(),
        }
    }
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dims).unwrap_or(0)
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dims..(i + 1) * self.dims]
    }
    /// Frames `from..to` (clamped) as a new matrix.
    pub fn slice(&self, from: usize, to: usize) -> Features {
        let to = to.min(self.rows());
        let from = from.min(to);
        Features {
            dims: self.dims,
            data: self.data[from * self.dims..to * self.dims].to_vec(),
        }
    }
}

/// The analysis front end: precomputed window, FFT, filterbanks and DCT.
#[derive(Debug, Clone)]
pub struct Frontend {
    fft: Fft,
    window: Vec<f32>,
    filterbank: MelFilterbank,
    dct: Vec<f32>,
}

impl Default for Frontend {
    fn default() -> Self {
        Self::new(1.0)
    }
}

impl Frontend {
    /// A front end whose filterbank is warped by `warp` (1.0 at run time).
    pub fn new(warp: f32) -> Self {
        Frontend {
            fft: Fft::new(FFT_LEN),
            window: hamming(FRAME_LEN),
            filterbank: MelFilterbank::new(MEL_BANDS, warp),
            dct: dct_matrix(MEL_BANDS, CEPSTRA),
        }
    }

    /// Log-mel energies per 10 ms frame of linear samples scaled to ±1.
    pub fn log_mel(&self, samples: &[f32]) -> Features {
        let mut emphasised = samples.to_vec();
        pre_emphasis(&mut emphasised, PRE_EMPHASIS);
        let frames = frame_count(emphasised.len());
        let mut out = Features::new(MEL_BANDS);
        out.data.reserve(frames * MEL_BANDS);
        let (mut re, mut im, mut power) = (Vec::new(), Vec::new(), Vec::new());
        let mut frame = vec![0.0; FRAME_LEN];
        for f in 0..frames {
            let start = f * FRAME_HOP;
            for (i, slot) in frame.iter_mut().enumerate() {
                *slot = emphasised[start + i] * self.window[i];
            }
            self.fft
                .power_spectrum(&frame, &mut re, &mut im, &mut power);
            self.filterbank.log_energies(&power, &mut out.data);
        }
        out
    }

    /// MFCC c0..c19 per frame from log-mel energies.
    pub fn cepstra(&self, log_mel: &Features) -> Features {
        let mut out = Features::new(CEPSTRA);
        out.data.reserve(log_mel.rows() * CEPSTRA);
        for r in 0..log_mel.rows() {
            let row = log_mel.row(r);
            for k in 0..CEPSTRA {
                let coefficients = &self.dct[k * MEL_BANDS..(k + 1) * MEL_BANDS];
                out.data
                    .push(coefficients.iter().zip(row).map(|(a, b)| a * b).sum());
            }
        }
        out
    }

    /// MFCC straight from samples.
    pub fn mfcc(&self, samples: &[f32]) -> Features {
        self.cepstra(&self.log_mel(samples))
    }
}

/// Subtracts each column's mean over the rows (cepstral mean normalisation).
pub fn mean_normalise(features: &mut Features) {
    let rows = features.rows();
    if rows == 0 {
        return;
    }
    let dims = features.dims;
    let mut mean = vec![0.0f32; dims];
    for r in 0..rows {
        for (m, v) in mean.iter_mut().zip(features.row(r)) {
            *m += v;
        }
    }
    for m in &mut mean {
        *m /= rows as f32;
    }
    for r in 0..rows {
        for (v, m) in features.data[r * dims..(r + 1) * dims]
            .iter_mut()
            .zip(&mean)
        {
            *v -= m;
        }
    }
}

/// Regression deltas over ±`width` frames (edges repeat the end frames).
pub fn deltas(features: &Features, width: usize) -> Features {
    let rows = features.rows();
    let dims = features.dims;
    let mut out = Features::new(dims);
    out.data.resize(rows * dims, 0.0);
    if rows == 0 || width == 0 {
        return out;
    }
    let norm: f32 = 2.0 * (1..=width).map(|n| (n * n) as f32).sum::<f32>();
    for t in 0..rows {
        for n in 1..=width {
            let ahead = features.row((t + n).min(rows - 1));
            let behind = features.row(t.saturating_sub(n));
            for d in 0..dims {
                out.data[t * dims + d] += n as f32 * (ahead[d] - behind[d]) / norm;
            }
        }
    }
    out
}

/// Log energy (natural log of mean square, floored) of each 10 ms block of samples.
pub fn block_log_energy(samples: &[f32], block: usize) -> Vec<f32> {
    samples
        .chunks_exact(block.max(1))
        .map(|c| {
            (c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32)
                .max(1e-10)
                .ln()
        })
        .collect()
}

/// Resamples by `factor` (>1 makes the signal shorter and higher: speed perturbation) with
/// linear interpolation.
pub fn resample_linear(samples: &[f32], factor: f32) -> Vec<f32> {
    if samples.len() < 2 || factor.is_nan() || factor <= 0.0 {
        return samples.to_vec();
    }
    let out_len = ((samples.len() - 1) as f32 / factor) as usize;
    (0..out_len)
        .map(|i| {
            let pos = i as f32 * factor;
            let k = pos as usize;
            let frac = pos - k as f32;
            let a = samples[k.min(samples.len() - 1)];
            let b = samples[(k + 1).min(samples.len() - 1)];
            a + (b - a) * frac
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq_hz: f32, len: usize, amplitude: f32) -> Vec<f32> {
        (0..len)
            .map(|n| {
                amplitude
                    * (2.0 * std::f32::consts::PI * freq_hz * n as f32 / SAMPLE_RATE_HZ as f32)
                        .sin()
            })
            .collect()
    }

    #[test]
    fn sine_peaks_at_its_bin() {
        let fft = Fft::new(FFT_LEN);
        // 1000 Hz is bin 32 at 31.25 Hz per bin; 1500 Hz is bin 48.
        for (freq, bin) in [(1000.0, 32usize), (1500.0, 48), (437.5, 14)] {
            let signal = sine(freq, FFT_LEN, 0.5);
            let (mut re, mut im, mut power) = (Vec::new(), Vec::new(), Vec::new());
            fft.power_spectrum(&signal, &mut re, &mut im, &mut power);
            let peak = power
                .iter()
                .enumerate()
                .fold(
                    (0, 0.0f32),
                    |best, (k, &p)| if p > best.1 { (k, p) } else { best },
                )
                .0;
            assert_eq!(peak, bin, "{freq} Hz");
            // An on-bin sine has all its energy in one bin: N/2 * A, squared.
            let expected = (FFT_LEN as f32 / 2.0 * 0.5).powi(2);
            assert!((power[bin] - expected).abs() / expected < 1e-3);
        }
    }

    #[test]
    fn fft_matches_direct_dft() {
        let fft = Fft::new(16);
        let mut rng = Rng::new(7);
        let x: Vec<f32> = (0..16).map(|_| rng.normal()).collect();
        let (mut re, mut im) = (x.clone(), vec![0.0; 16]);
        fft.transform(&mut re, &mut im);
        for k in 0..16 {
            let (mut dr, mut di) = (0.0f64, 0.0f64);
            for (n, v) in x.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (k * n) as f64 / 16.0;
                dr += *v as f64 * a.cos();
                di += *v as f64 * a.sin();
            }
            assert!((re[k] as f64 - dr).abs() < 1e-4 && (im[k] as f64 - di).abs() < 1e-4);
        }
    }

    #[test]
    fn mel_band_of_a_sine_is_the_loudest() {
        let frontend = Frontend::default();
        let bank = MelFilterbank::new(MEL_BANDS, 1.0);
        for freq in [300.0f32, 1000.0, 2500.0] {
            let mel = frontend.log_mel(&sine(freq, 2000, 0.3));
            assert!(mel.rows() > 10);
            let row = mel.row(mel.rows() / 2);
            let loudest = (0..bank.bands())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            // The band whose centre is nearest the tone in mel.
            let (lo, hi) = (hz_to_mel(MEL_LOW_HZ), hz_to_mel(MEL_HIGH_HZ));
            let centre = |b: usize| lo + (hi - lo) * (b + 1) as f32 / (MEL_BANDS + 1) as f32;
            let nearest = (0..MEL_BANDS)
                .min_by(|&a, &b| {
                    (centre(a) - hz_to_mel(freq))
                        .abs()
                        .total_cmp(&(centre(b) - hz_to_mel(freq)).abs())
                })
                .unwrap_or(0);
            assert!(
                loudest.abs_diff(nearest) <= 1,
                "{freq}: {loudest} vs {nearest}"
            );
        }
    }

    #[test]
    fn warped_filterbank_moves_the_peak() {
        let tone = sine(1200.0, 2000, 0.3);
        let loudest = |warp: f32| {
            let mel = Frontend::new(warp).log_mel(&tone);
            let row = mel.row(5).to_vec();
            (0..MEL_BANDS)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0)
        };
        // Stretching the frequency axis (warp > 1) puts a tone in a higher band.
        assert!(loudest(1.15) > loudest(0.87));
    }

    #[test]
    fn cmn_zeroes_column_means_and_deltas_of_a_ramp() {
        let mut f = Features::new(2);
        for t in 0..10 {
            f.data.extend([t as f32, 5.0]);
        }
        let d = deltas(&f, 2);
        // The slope of a ramp away from the edges is 1.
        assert!((d.row(5)[0] - 1.0).abs() < 1e-6 && d.row(5)[1].abs() < 1e-6);
        mean_normalise(&mut f);
        let sums: Vec<f32> = (0..2).map(|c| (0..10).map(|r| f.row(r)[c]).sum()).collect();
        assert!(sums.iter().all(|s| s.abs() < 1e-4));
    }

    #[test]
    fn pre_emphasis_removes_dc() {
        let mut x = vec![1.0f32; 50];
        pre_emphasis(&mut x, 1.0);
        assert_eq!(x[0], 1.0);
        assert!(x[1..].iter().all(|v| *v == 0.0));
    }

    #[test]
    fn frames_and_resampling_lengths() {
        assert_eq!(frame_count(199), 0);
        assert_eq!(frame_count(200), 1);
        assert_eq!(frame_count(8000), 98);
        assert_eq!(resample_linear(&vec![0.0; 1001], 1.25).len(), 800);
    }
}
