"""Fixed vocabularies the simulated world draws from: names, organisations, texts, carriers.

Everything here is invented; names and numbers only look real. Accented and non-Latin names
and emoji make some texts UCS-2, as in a real organisation's data.
"""

from __future__ import annotations

FIRST_NAMES: tuple[str, ...] = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Charles", "Karen", "Christopher", "Lisa", "Daniel", "Nancy", "Matthew", "Betty",
    "Anthony", "Sandra", "Mark", "Ashley", "Donald", "Kimberly", "Steven", "Emily", "Andrew",
    "Donna", "Kenneth", "Michelle", "Joshua", "Carol", "Kevin", "Amanda", "Brian", "Melissa",
    "José", "María", "Zoë", "François", "Siobhán", "Renée", "Björn", "Chloé", "Joaquín",
    "Inés", "Łukasz", "Nguyễn", "Aarav", "Priya", "Wei", "Hiroshi", "Fatima", "Oluwaseun",
    "Dmitri", "Ana", "Luis", "Mei", "Kwame", "Aisha", "Mateo", "Sofía",
)
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker",
    "O'Brien", "Müller", "García", "Peña", "Bergström", "Dubois", "Kowalczyk", "Okafor",
    "Tanaka", "Chen", "Patel", "Kim", "Cohen", "Rossi", "Fitzgerald", "Van der Berg",
    "Ibáñez", "Þórsson", "St. John", "Al-Masri",
)
EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "aol.com",
    "proton.me", "comcast.net", "verizon.net", "example.org",
)
TITLES: tuple[str | None, ...] = (
    None, "", "", "Volunteer", "Precinct Captain", "Teacher", "Registered Nurse",
    "Small Business Owner", "State Representative", "Chief of Staff", "Policy Director",
    "Retired", "Student", "Organizer", "City Council Member", "Legislative Aide",
    "Director of Government Affairs", "Pastor", "Firefighter", "Software Engineer",
)
ORGANIZATIONS: tuple[str | None, ...] = (
    None, None, "", "Sierra Club", "AFL-CIO", "League of Women Voters", "Local 1199 SEIU",
    "Acme Widgets LLC", "Riverside Unified School District", "Habitat for Humanity",
    "Chamber of Commerce", "Office of Sen. Ramírez", "Friends of the Library",
    "National Nurses United", "Café Olé Cooperative", "Boys & Girls Club",
)
AREA_CODES: tuple[int, ...] = (
    202, 212, 213, 215, 303, 305, 312, 404, 415, 503, 512, 602, 617, 646, 702, 713, 718,
    720, 773, 786, 804, 808, 813, 832, 917, 919, 971,
)
ZIP_CODES: tuple[str, ...] = (
    "20001", "10027", "90012", "19104", "80205", "33101", "60614", "30303", "94110", "97214",
    "78701", "85004", "02139", "11215", "89101", "77002", "23220", "96813", "33602", "27601",
)
ORG_NUMBERS: tuple[str, ...] = ("+12025550143", "+12025550178", "+13125550199", "+16175550112")
"""The organisation's sending numbers (555-01xx: reserved for fiction)."""

CARRIERS: tuple[str, ...] = (
    "Verizon Wireless", "T-Mobile USA, Inc.", "AT&T Wireless", "US Cellular",
    "Cellco Partnership", "Google (Grand Central) - SVR", "Bandwidth/13 - SVR",
)

# (error_code, error_message); Twilio-like provider codes.
UNDELIVERED_ERRORS: tuple[tuple[int, str], ...] = (
    (30003, "Unreachable destination handset"),
    (30005, "Unknown destination handset"),
    (30006, "Landline or unreachable carrier"),
    (30008, "Unknown error"),
)
FAILED_ERRORS: tuple[tuple[int, str], ...] = (
    (30007, "Message filtered by carrier"),
    (30008, "Unknown error"),
    (30034, "Message from an unregistered number"),
    (30005, "Unknown destination handset"),
)
REJECTED_ERRORS: tuple[tuple[int, str], ...] = (
    (21610, "Attempt to send to unsubscribed recipient"),
    (21211, "Invalid 'To' phone number"),
    (30007, "Message filtered by carrier"),
)
ERRORS: tuple[tuple[int, str], ...] = UNDELIVERED_ERRORS + FAILED_ERRORS + REJECTED_ERRORS
ERROR_RANGES: dict[int, tuple[int, int]] = {
    4: (0, len(UNDELIVERED_ERRORS)),
    5: (len(UNDELIVERED_ERRORS), len(UNDELIVERED_ERRORS) + len(FAILED_ERRORS)),
    6: (len(UNDELIVERED_ERRORS) + len(FAILED_ERRORS), len(ERRORS)),
}
"""Status -> [start, end) slice of ERRORS that a text ending in that status draws from."""

# (description, message); "{link}" becomes the campaign's tracked link.
CAMPAIGNS: tuple[tuple[str, str], ...] = (
    ("GOTV reminder", "Election Day is Tuesday! Find your polling place and make a plan to "
     "vote: {link} Reply STOP to opt out."),
    ("Town hall invite", "Join us Thursday at 7pm for a town hall on clean water with Rep. "
     "Alvarez. RSVP: {link}"),
    ("Call your senator", "The vote on HB 1234 is tomorrow. Call your senator now, it takes 2 "
     "minutes: {link}"),
    ("Volunteer shift", "We need 20 more volunteers for Saturday's canvass. Can you take a "
     "shift? Sign up: {link}"),
    ("Fundraising push", "We're $4,800 short of our goal with 48 hours left. Chip in $10 "
     "today? {link}"),
    ("Thank you note", "Thank you for everything you did this season. We couldn't have done "
     "it without you!"),
    ("Petition drive", "🌊 Protect our rivers! Add your name to the petition before Friday: "
     "{link}"),
    ("Rally reminder", "¡Nos vemos mañana en la plaza a las 10! Trae a tu familia y amigos. "
     "Más info: {link}"),
    ("Survey", "Quick question: what issue matters most to you this year? Tell us in 30 "
     "seconds: {link}"),
    ("Event recap", "Thanks for coming to the rally 🎉 Photos are up, tag yourself: {link}"),
    ("Budget hearing", "The city budget hearing is Monday at 6pm at City Hall (room 201). "
     "Public comment opens at 6:30pm and each speaker gets 2 minutes, so bring a short "
     "statement about library funding and arrive early to sign up. Details and talking "
     "points: {link}"),
    ("Newsletter", "Our November newsletter is out: wins in the legislature, new chapters "
     "and a special offer for members. Read it here: {link}"),
    ("Phone bank", "Phone bank tonight 6\u20138pm. Snacks provided, training at 5:45. "
     "Join: {link}"),
    ("Early voting", "Early voting starts today and runs through Sunday. Polls are open "
     "8am\u20137pm. Your nearest site: {link}"),
)
INDIVIDUAL_MESSAGES: tuple[str, ...] = (
    "Hi {first}, thanks for signing up to volunteer! Reply STOP to opt out.",
    "Hi {first}, are you still able to make the canvass on Saturday at 10am?",
    "{first}, can you call your senator today? Script here: {link}",
    "Hola {first}, ¿puedes venir el sábado a las 10? Gracias 🙏",
    "Hi {first}! Your yard sign is ready for pickup at the office.",
    "{first}, thank you for your donation. Your receipt is on its way by email.",
    "Hey {first}, just following up on the RSVP link I sent: {link}",
    "Bonjour {first}, merci pour votre aide hier soir !",
    "Hi {first}, your shift was moved to 2pm. Let me know if that does not work [room B].",
    "{first} \u2013 great to meet you at the town hall. Here is the info I mentioned: {link}",
)
INBOUND_MESSAGES: tuple[str, ...] = (
    "YES", "Yes!", "yes", "STOP", "Stop", "Thanks!", "Count me in 👍", "Who is this?",
    "Je serai là.", "Can't make it, sorry", "What time?", "¡Sí, claro!", "unsubscribe",
    "Where do I vote?", "Done ✅", "I called, they didn't pick up", "Can I bring my kids?",
    "Already voted!", "No thanks", "Is there parking?", "👍", "Will do", "Not interested",
    "Please remove me from this list", "Great, see you there", "How much is the ticket?",
)
