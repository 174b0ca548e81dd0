//! Plausible drives for the simulated blackboxes: a start near a city, a
//! speed between 0 and 120 km/h that follows a target (stops at lights,
//! town driving, highway stretches) with bounded acceleration, a heading
//! that drifts and sometimes turns, one step per second of simulated time.

use rand::Rng;

/// Cities the drives start near: (name, latitude, longitude, altitude m).
const CITIES: &[(&str, f64, f64, f64)] = &[
    ("Seoul", 37.5665, 126.9780, 38.0),
    ("Busan", 35.1796, 129.0756, 20.0),
    ("Tokyo", 35.6762, 139.6503, 40.0),
    ("Berlin", 52.5200, 13.4050, 34.0),
    ("Paris", 48.8566, 2.3522, 35.0),
    ("Madrid", 40.4168, -3.7038, 667.0),
    ("New York", 40.7128, -74.0060, 10.0),
    ("San Francisco", 37.7749, -122.4194, 16.0),
    ("Sao Paulo", -23.5505, -46.6333, 760.0),
    ("Sydney", -33.8688, 151.2093, 58.0),
];

/// Random start within this distance of the city centre, in metres.
const START_RADIUS_M: f64 = 10_000.0;
const EARTH_RADIUS_M: f64 = 6_371_000.0;
pub const MAX_SPEED_KMH: f64 = 120.0;
/// Acceleration and braking limits, m/s per second.
const MAX_ACCEL: f64 = 3.0;
const MAX_BRAKE: f64 = 6.0;

/// One simulated GPS fix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub lat: f64,
    pub lon: f64,
    /// km/h.
    pub spd: f64,
    /// Degrees clockwise from north, 0..360.
    pub hdg: f64,
    /// Metres.
    pub alt: f64,
}

/// A vehicle's drive; [`Route::step`] advances it by one second.
#[derive(Debug, Clone)]
pub struct Route {
    fix: Fix,
    /// m/s.
    speed: f64,
    target_speed: f64,
    /// Seconds until a new target speed is drawn.
    hold: u32,
    /// Degrees per second while turning.
    turn_rate: f64,
    turn_left: u32,
    base_alt: f64,
}

impl Route {
    /// A drive starting at a random point near a random city.
    pub fn new(rng: &mut impl Rng) -> Self {
        let (_, lat, lon, alt) = CITIES[rng.random_range(0..CITIES.len())];
        let distance = START_RADIUS_M * rng.random::<f64>().sqrt();
        let bearing = rng.random_range(0.0..360.0);
        let (lat, lon) = travel(lat, lon, bearing, distance);
        Self {
            fix: Fix {
                lat,
                lon,
                spd: 0.0,
                hdg: rng.random_range(0.0..360.0),
                alt,
            },
            speed: 0.0,
            target_speed: 0.0,
            hold: rng.random_range(0..20),
            turn_rate: 0.0,
            turn_left: 0,
            base_alt: alt,
        }
    }

    /// The current fix.
    pub fn fix(&self) -> Fix {
        self.fix
    }

    /// Advance one second and return the new fix.
    pub fn step(&mut self, rng: &mut impl Rng) -> Fix {
        // Target speed: stop, town, arterial or highway, held a while.
        if self.hold == 0 {
            let kmh: f64 = match rng.random_range(0..10) {
                0 | 1 => 0.0,
                2..=5 => rng.random_range(20.0..55.0),
                6..=8 => rng.random_range(50.0..85.0),
                _ => rng.random_range(85.0..MAX_SPEED_KMH),
            };
            self.target_speed = kmh / 3.6;
            self.hold = rng.random_range(10..90);
        } else {
            self.hold -= 1;
        }
        let delta = (self.target_speed - self.speed).clamp(-MAX_BRAKE, MAX_ACCEL);
        self.speed = (self.speed + delta).clamp(0.0, MAX_SPEED_KMH / 3.6);

        // Heading: turns only while moving; sometimes a 90-degree turn over a
        // few seconds, otherwise a slow drift.
        if self.speed > 1.0 {
            if self.turn_left == 0 && rng.random_range(0..60) == 0 {
                let seconds = rng.random_range(3..8);
                let angle: f64 = if rng.random() { 90.0 } else { -90.0 };
                self.turn_rate = angle / f64::from(seconds);
                self.turn_left = seconds;
            }
            let change = if self.turn_left > 0 {
                self.turn_left -= 1;
                self.turn_rate
            } else {
                rng.random_range(-3.0..3.0)
            };
            self.fix.hdg = (self.fix.hdg + change).rem_euclid(360.0);
        }

        let (lat, lon) = travel(self.fix.lat, self.fix.lon, self.fix.hdg, self.speed);
        self.fix.lat = lat;
        self.fix.lon = lon;
        self.fix.spd = self.speed * 3.6;
        self.fix.alt = (self.fix.alt + rng.random_range(-0.5..0.5))
            .clamp(self.base_alt - 50.0, self.base_alt + 50.0);
        self.fix
    }
}

/// Move `distance` metres from (lat, lon) along `bearing` degrees (a flat
/// approximation, good for the few metres of one step). Latitude stays
/// within ±85 degrees, longitude wraps to -180..180.
fn travel(lat: f64, lon: f64, bearing: f64, distance: f64) -> (f64, f64) {
    let b = bearing.to_radians();
    let dlat = distance * b.cos() / EARTH_RADIUS_M;
    let dlon = distance * b.sin() / (EARTH_RADIUS_M * lat.to_radians().cos().max(0.01));
    let lat = (lat + dlat.to_degrees()).clamp(-85.0, 85.0);
    let lon = (lon + dlon.to_degrees() + 180.0).rem_euclid(360.0) - 180.0;
    (lat, lon)
}

/// Great-circle distance in metres (haversine).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn starts_near_a_city() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let r = Route::new(&mut rng);
            let f = r.fix();
            let nearest = CITIES
                .iter()
                .map(|c| distance_m((f.lat, f.lon), (c.1, c.2)))
                .fold(f64::INFINITY, f64::min);
            assert!(nearest <= START_RADIUS_M * 1.01, "{nearest} m from a city");
            assert_eq!(f.spd, 0.0);
        }
    }

    #[test]
    fn an_hour_of_driving_is_plausible() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..20 {
            let mut route = Route::new(&mut rng);
            let start = route.fix();
            let mut prev = start;
            let mut moved = 0.0;
            let mut max_speed: f64 = 0.0;
            let mut stopped = 0;
            for _ in 0..3600 {
                let f = route.step(&mut rng);
                assert!((0.0..=MAX_SPEED_KMH + 1e-9).contains(&f.spd), "{f:?}");
                assert!((0.0..360.0).contains(&f.hdg), "{f:?}");
                assert!((-90.0..=90.0).contains(&f.lat) && (-180.0..=180.0).contains(&f.lon));
                let step = distance_m((prev.lat, prev.lon), (f.lat, f.lon));
                // One second at the current speed (flat approximation).
                assert!(
                    step <= f.spd / 3.6 * 1.01 + 0.01,
                    "{step} m at {} km/h",
                    f.spd
                );
                // Acceleration bounded.
                assert!((f.spd - prev.spd) / 3.6 <= MAX_ACCEL + 1e-9);
                assert!((prev.spd - f.spd) / 3.6 <= MAX_BRAKE + 1e-9);
                assert!((f.alt - start.alt).abs() <= 50.0 + 1e-9);
                moved += step;
                max_speed = max_speed.max(f.spd);
                if f.spd == 0.0 {
                    stopped += 1;
                }
                prev = f;
            }
            // It drives: some distance, some speed, not always standing.
            assert!(moved > 5_000.0, "moved only {moved} m in an hour");
            assert!(max_speed > 30.0);
            assert!(stopped < 3000);
            let away = distance_m((start.lat, start.lon), (prev.lat, prev.lon));
            assert!(away <= moved + 1.0);
        }
    }

    #[test]
    fn same_seed_same_drive() {
        let drive = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut r = Route::new(&mut rng);
            (0..100).map(|_| r.step(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(drive(3), drive(3));
        assert_ne!(drive(3), drive(4));
    }

    #[test]
    fn travel_wraps_and_clamps() {
        let (lat, lon) = travel(0.0, 179.9999, 90.0, 1000.0);
        assert!(lat.abs() < 1e-9 && lon < -179.0);
        let (lat, _) = travel(84.9999, 0.0, 0.0, 100_000.0);
        assert_eq!(lat, 85.0);
        let d = distance_m((0.0, 0.0), travel(0.0, 0.0, 45.0, 1000.0));
        assert!((d - 1000.0).abs() < 1.0, "{d}");
    }
}
