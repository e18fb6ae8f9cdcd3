//! Fuzz target for speech: arbitrary audio into what a speech worker runs for a caller's
//! answer — the streaming collector (end-pointing with webrtc-vad, recognition), the check-digit
//! search of a 9-digit reading, the text-prompted verification and enrolment — and arbitrary
//! bytes into the template and WAV readers.
//!
//! Properties checked beyond "no panic": the collector reports at most one start and exactly
//! one verdict once fed past its time-outs; a recognition's digits are ASCII digits no longer
//! than the grammar allows; a correction passes its check; scores are not NaN.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use telepay::voice::{
    CollectorConfig, CollectorEvent, SpeechCollector, Template, Verifier, VoiceModel,
    check_digit, wav,
};

fn model() -> Arc<VoiceModel> {
    static MODEL: OnceLock<Arc<VoiceModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(VoiceModel::embedded().expect("the embedded model")))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let model = model();
    // Readers of stored and uploaded bytes.
    let _ = Template::from_bytes(data);
    let _ = wav::read_wav_bytes(data);
    if data.len() < 4 {
        return;
    }
    // The first byte picks the grammar and the packet size; the rest is 16-bit audio, at most
    // 20 s of it.
    let digits = usize::from(data[0] % 9) + 1;
    let packet = [80, 160, 240, 37][usize::from(data[1] % 4)];
    let audio: Vec<i16> = data[2..]
        .chunks_exact(2)
        .take(8 * 20_000)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let config = CollectorConfig {
        digits_min: 1,
        digits_max: digits,
        ..CollectorConfig::default()
    };
    let Ok(mut collector) = SpeechCollector::new(Arc::clone(&model), config) else {
        return;
    };
    let mut started = 0;
    let mut verdicts = Vec::new();
    let silence = vec![0i16; 8 * 1_000];
    for chunk in audio.chunks(packet).chain(std::iter::repeat_n(&silence[..], 70)) {
        collector.push(chunk);
        while let Some(event) = collector.poll() {
            match event {
                CollectorEvent::SpeechStarted { .. } => started += 1,
                other => verdicts.push(other),
            }
        }
        if collector.is_finished() {
            break;
        }
    }
    assert!(started <= 1);
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    if let Some(CollectorEvent::Result(r)) = verdicts.first() {
        assert!(r.digits.bytes().all(|b| b.is_ascii_digit()));
        assert!(r.digits.len() <= digits);
        assert!(!r.confidence.is_nan());
    }
    let utterance = collector.take_utterance();
    let damm = |n: &str| telepay::telephony::ivr::damm_is_valid(n);
    let reading: String = audio
        .iter()
        .take(9)
        .map(|s| char::from(b'0' + (s.unsigned_abs() % 10) as u8))
        .collect();
    if reading.len() == 9
        && let Some(c) = check_digit::correct(&model.recognizer, &utterance, &reading, damm)
    {
        assert!(damm(&c.digits));
    }
    let verifier = Verifier::new(Arc::clone(&model));
    let prompt = &reading[..reading.len().min(4)];
    if let Ok(template) = verifier.enrol(&[(utterance.as_slice(), Some(prompt))]) {
        let v = verifier.verify(&audio, prompt, &template);
        assert!(!v.score.is_nan());
        let back = Template::from_bytes(&template.to_bytes());
        assert!(back.is_ok());
    }
});
